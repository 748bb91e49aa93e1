package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

/*
 * The SSH side follows upstream pulumi-command v1.2.1 (provider/pkg/provider/remote/connection.go and
 * commandOutputs.go) on purpose, weak spots included, so the lab and CI meet what production meets:
 *   - a pinned hostKey sets HostKeyAlgorithms to exactly that key's type: an RSA pin offers only "ssh-rsa"
 *     (SHA-1), which OpenSSH 8.8 and later refuse;
 *   - the agent (agentSocketPath, else SSH_AUTH_SOCK) is dialled whenever one is named, even next to a
 *     privateKey, and an unreachable socket fails before any dial, without retries;
 *   - perDialTimeout bounds the TCP connect only, never the SSH handshake; through a proxy nothing is bounded;
 *   - every dial error is retried, a host-key mismatch too: dialErrorLimit+1 attempts, 100 ms apart growing
 *     ×1.5 up to 5 s (pulumi/sdk's retry.Until), then "after N failed attempts: <error>";
 *   - a failed command is "<ssh error>: running "<command>":\n<stdout and stderr>";
 *   - a refused `environment` variable is an error; refused PULUMI_COMMAND_STDOUT/STDERR only a warning.
 * The deliberate differences are in docs/pulumi-engine.md (conformance table).
 */

// dialer holds what one operation opened (agent sockets, the proxy's client) and closes it afterwards.
// Upstream leaks them; closing them changes nothing a user can see.
type dialer struct {
	closers []io.Closer
	status  func(string)
}

func (d *dialer) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		_ = d.closers[i].Close()
	}
}

// sshConfig is upstream's SSHConfig: host key, auth in upstream's order (key, password, agent), TCP timeout.
func (d *dialer) sshConfig(c *connection) (*ssh.ClientConfig, error) {
	cfg := &ssh.ClientConfig{
		User:    c.user,
		Timeout: time.Duration(c.perDialTimeoutSeconds) * time.Second,
	}
	if c.hostKey != nil {
		pinned := c.hostKey
		// Upstream asks for exactly the pinned key's type; for RSA that is "ssh-rsa", the SHA-1 signature.
		cfg.HostKeyAlgorithms = []string{pinned.Type()}
		cfg.HostKeyCallback = func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if bytes.Equal(key.Marshal(), pinned.Marshal()) {
				return nil
			}
			// Upstream's ssh.FixedHostKey says only "ssh: host key mismatch"; the fingerprints help whoever reads it.
			return fmt.Errorf("ssh: host key mismatch for %s: the server presented %s %s but connection.hostKey pins %s %s",
				c.address(), key.Type(), ssh.FingerprintSHA256(key), pinned.Type(), ssh.FingerprintSHA256(pinned))
		}
	} else {
		// The documented upstream behaviour: without hostKey the server's key is not checked.
		cfg.HostKeyCallback = ssh.InsecureIgnoreHostKey()
	}
	if c.privateKey != "" {
		signer, err := parseSigner(c.privateKey, c.privateKeyPass)
		if err != nil {
			return nil, err
		}
		cfg.Auth = append(cfg.Auth, ssh.PublicKeys(signer))
	}
	if c.password != "" {
		password := c.password
		cfg.Auth = append(cfg.Auth, ssh.Password(password), ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
			answers := make([]string, len(questions))
			for i := range answers {
				answers[i] = password
			}
			return answers, nil
		}))
	}
	socket := c.agentSocketPath
	if socket == "" {
		socket = os.Getenv("SSH_AUTH_SOCK")
	}
	if socket != "" {
		conn, err := net.Dial("unix", socket)
		if err != nil {
			return nil, err
		}
		d.closers = append(d.closers, conn)
		cfg.Auth = append(cfg.Auth, ssh.PublicKeysCallback(agent.NewClient(conn).Signers))
	}
	return cfg, nil
}

// dialWithRetry is upstream's: pulumi/sdk's retry.Until (100 ms, ×1.5, at most 5 s between attempts), every
// error retried, giving up once more than maxAttempts attempts failed (so maxAttempts+1 dials; -1 or any
// negative: never). A cancelled context ends the waiting, not an attempt already under way.
func dialWithRetry[T any](ctx context.Context, d *dialer, msg string, maxAttempts int, f func() (T, error)) (T, error) {
	var zero T
	delay := 100 * time.Millisecond
	for try := 0; ; try++ {
		result, err := f()
		if err == nil {
			return result, nil
		}
		dials := try + 1
		if maxAttempts > -1 && dials > maxAttempts {
			return zero, fmt.Errorf("after %d failed attempts: %w", try, err)
		}
		limit := "inf"
		if maxAttempts != -1 {
			limit = strconv.Itoa(maxAttempts)
		}
		d.status(fmt.Sprintf("%s %d/%s failed: retrying", msg, dials, limit))
		select {
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(time.Duration(float64(delay)*1.5), 5*time.Second)
	}
}

// abortOnCancel closes conn when ctx ends (Ctrl-C, customTimeouts), so a handshake that never completes can
// still be cancelled. Upstream cannot cancel it at all; no timeout is added here either.
func abortOnCancel(ctx context.Context, conn net.Conn) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = conn.Close() })
}

// sshDial is ssh.Dial (TCP connect bounded by cfg.Timeout, handshake unbounded) that a cancellation can end.
func sshDial(ctx context.Context, addr string, cfg *ssh.ClientConfig) (*ssh.Client, error) {
	conn, err := net.DialTimeout("tcp", addr, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	stop := abortOnCancel(ctx, conn)
	defer stop()
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return ssh.NewClient(c, chans, reqs), nil
}

// dial is upstream's Connection.Dial, proxy path included: the proxy is dialled with its own
// dialErrorLimit; the tunnel and the handshake through it with the node's, the handshake retried on the
// same tunnel as upstream does; errors on that path start with "proxy: ".
func (d *dialer) dial(ctx context.Context, c *connection) (*ssh.Client, error) {
	cfg, err := d.sshConfig(c)
	if err != nil {
		return nil, err
	}
	endpoint := c.address()
	if c.proxy == nil {
		return dialWithRetry(ctx, d, "Dial", c.dialErrorLimit, func() (*ssh.Client, error) {
			return sshDial(ctx, endpoint, cfg)
		})
	}
	proxyCfg, err := d.sshConfig(c.proxy)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	proxyClient, err := dialWithRetry(ctx, d, "Dial proxy", c.proxy.dialErrorLimit, func() (*ssh.Client, error) {
		return sshDial(ctx, c.proxy.address(), proxyCfg)
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	d.closers = append(d.closers, proxyClient)
	conn, err := dialWithRetry(ctx, d, "Dial from proxy", c.dialErrorLimit, func() (net.Conn, error) {
		return proxyClient.Dial("tcp", endpoint)
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	stop := abortOnCancel(ctx, conn)
	defer stop()
	var chans <-chan ssh.NewChannel
	var reqs <-chan *ssh.Request
	sshConn, err := dialWithRetry(ctx, d, "Dial", c.dialErrorLimit, func() (ssh.Conn, error) {
		sc, ch, r, err := ssh.NewClientConn(conn, endpoint, cfg)
		chans, reqs = ch, r
		return sc, err
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	return ssh.NewClient(sshConn, chans, reqs), nil
}

// lockedBuffer is the combined stdout+stderr of a run, in the order the two streams arrived.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// runRemote runs one command line on the host over a new SSH connection: upstream's CommandOutputs.run.
// env must be accepted by the server (AcceptEnv) or the run fails; prevEnv (PULUMI_COMMAND_STDOUT/STDERR)
// is set optimistically with a warning when refused.
func runRemote(ctx context.Context, c *connection, cmd string, stdin *string, env, prevEnv map[string]string, out outputSinks, status func(string), warn func(string)) error {
	d := &dialer{status: status}
	defer d.close()
	client, err := d.dial(ctx, c)
	if err != nil {
		return err
	}
	d.closers = append(d.closers, client)
	session, err := client.NewSession()
	if err != nil {
		return err
	}
	defer session.Close()
	for _, k := range sortedKeys(env) {
		if err := session.Setenv(k, env[k]); err != nil {
			warn(setenvAdvice(k))
			return fmt.Errorf("could not set environment variable %q: %w", k, err)
		}
	}
	for _, k := range sortedKeys(prevEnv) {
		if err := session.Setenv(k, prevEnv[k]); err != nil {
			warn(setenvAdvice(k))
		}
	}
	if stdin != nil && *stdin != "" {
		session.Stdin = strings.NewReader(*stdin)
	}
	combined := &lockedBuffer{}
	session.Stdout = io.MultiWriter(out.stdout, combined)
	session.Stderr = io.MultiWriter(out.stderr, combined)
	done := make(chan error, 1)
	go func() { done <- session.Run(cmd) }()
	select {
	case <-ctx.Done():
		// Upstream waits for the command even when cancelled; here Ctrl-C (or customTimeouts) kills it.
		_ = session.Signal(ssh.SIGKILL)
		_ = client.Close()
		err = fmt.Errorf("cancelled: %w", ctx.Err())
	case err = <-done:
	}
	if err != nil {
		combined.mu.Lock()
		defer combined.mu.Unlock()
		return fmt.Errorf("%w: running %q:\n%s", err, cmd, combined.buf.String())
	}
	return nil
}

func setenvAdvice(key string) string {
	return fmt.Sprintf("Unable to set '%s'. This only works if your SSH server is configured to accept these variables via AcceptEnv. "+
		"Alternatively, if a Bash-like shell runs the command on the remote host, you could prefix the command itself with the variables in the form 'VAR=value command'", key)
}
