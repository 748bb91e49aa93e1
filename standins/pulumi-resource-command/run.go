package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
)

// outputSinks receive a command's stdout and stderr.
type outputSinks struct{ stdout, stderr io.Writer }

// capture keeps everything a stream wrote and passes each complete line to log (when logging is on).
type capture struct {
	mu      sync.Mutex
	all     bytes.Buffer
	partial []byte
	log     func(string)
}

func (c *capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.all.Write(p)
	if c.log == nil {
		return len(p), nil
	}
	c.partial = append(c.partial, p...)
	for {
		i := bytes.IndexByte(c.partial, '\n')
		if i < 0 {
			break
		}
		c.log(string(c.partial[:i]))
		c.partial = c.partial[i+1:]
	}
	return len(p), nil
}

func (c *capture) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.log != nil && len(c.partial) > 0 {
		c.log(string(c.partial))
		c.partial = nil
	}
}

// text is what lands in the stdout/stderr outputs: the stream without its final newline.
func (c *capture) text() string { return strings.TrimSuffix(c.all.String(), "\n") }

// run is one execution of a command line: create, update or delete.
type run struct {
	line    string
	env     map[string]string // the command's environment: a variable the server refuses fails the run
	prevEnv map[string]string // PULUMI_COMMAND_STDOUT/STDERR of the previous run: refused only warns
	stdout  string
	stderr  string
}

// execute runs r for the command and returns its stdout/stderr. A failure is upstream's
// "<error>: running "<line>":\n<stdout and stderr>"; stdin is never shown (it may hold a script or data).
func (p *provider) execute(ctx context.Context, urn string, c *command, r *run) error {
	logLine := func(stream string) func(string) {
		if c.logging == "none" || (c.logging != "stdoutAndStderr" && c.logging != stream) {
			return nil
		}
		// As upstream: each line as a transient status message of the resource (InfoStatus), not a kept diagnostic.
		return func(line string) { p.log.status(urn, line) }
	}
	stdout := &capture{log: logLine("stdout")}
	stderr := &capture{log: logLine("stderr")}
	sinks := outputSinks{stdout, stderr}
	var err error
	if c.typ == remoteCommandType {
		err = runRemote(ctx, c.conn, r.line, c.stdin, r.env, r.prevEnv, sinks,
			func(msg string) { p.log.status(urn, msg) }, func(msg string) { p.log.warn(urn, msg) })
	} else {
		err = runLocal(ctx, c, r.line, mergeEnv(r.env, r.prevEnv), sinks)
	}
	stdout.flush()
	stderr.flush()
	r.stdout, r.stderr = stdout.text(), stderr.text()
	return err
}

func mergeEnv(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// runLocal is upstream's local CommandOutputs.run: a failure is "<exec error>: running "<line>":\n<stdout
// and stderr>" (e.g. "exit status 7: running …").
func runLocal(ctx context.Context, c *command, line string, env map[string]string, out outputSinks) error {
	args := append(append([]string{}, c.interpreter[1:]...), line)
	cmd := exec.CommandContext(ctx, c.interpreter[0], args...)
	cmd.Dir = c.dir
	cmd.Env = os.Environ()
	for _, k := range sortedKeys(env) {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	if c.stdin != nil && *c.stdin != "" {
		cmd.Stdin = strings.NewReader(*c.stdin)
	}
	combined := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = io.MultiWriter(out.stdout, combined), io.MultiWriter(out.stderr, combined)
	if err := cmd.Run(); err != nil {
		combined.mu.Lock()
		defer combined.mu.Unlock()
		return fmt.Errorf("%w: running %q:\n%s", err, line, combined.buf.String())
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
