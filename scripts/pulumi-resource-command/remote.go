package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// hostKeyError is a refusal, not a transient failure: retrying would only ask the same server again.
type hostKeyError struct{ msg string }

func (e *hostKeyError) Error() string { return e.msg }

// dialer opens SSH connections and closes what it opened (agent sockets, the proxy's client).
type dialer struct {
	closers []io.Closer
	status  func(string)
}

func (d *dialer) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		_ = d.closers[i].Close()
	}
}

func (d *dialer) clientConfig(c *connection) (*ssh.ClientConfig, error) {
	var auth []ssh.AuthMethod
	if c.privateKey != "" {
		signer, err := parseSigner(c.privateKey, c.privateKeyPass)
		if err != nil {
			return nil, fmt.Errorf("privateKey for %s %v", c, err)
		}
		auth = append(auth, ssh.PublicKeys(signer))
	}
	// SSH_AUTH_SOCK is only a fallback: with a key or password given, an agent full of unrelated keys could
	// exhaust the server's MaxAuthTries before the right one is offered.
	socket := c.agentSocketPath
	if socket == "" && c.privateKey == "" && c.password == "" {
		socket = os.Getenv("SSH_AUTH_SOCK")
	}
	if socket != "" {
		conn, err := net.Dial("unix", socket)
		if err != nil {
			return nil, fmt.Errorf("cannot reach the SSH agent at %s (agentSocketPath or SSH_AUTH_SOCK): %w", socket, err)
		}
		d.closers = append(d.closers, conn)
		auth = append(auth, ssh.PublicKeysCallback(agent.NewClient(conn).Signers))
	}
	if c.password != "" {
		password := c.password
		auth = append(auth, ssh.Password(password), ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
			answers := make([]string, len(questions))
			for i := range answers {
				answers[i] = password
			}
			return answers, nil
		}))
	}
	if len(auth) == 0 {
		return nil, fmt.Errorf("no credentials for %s: set connection.privateKey, connection.password or connection.agentSocketPath (or run with SSH_AUTH_SOCK)", c)
	}

	cfg := &ssh.ClientConfig{User: c.user, Auth: auth}
	if c.hostKey == nil {
		// The documented upstream behaviour: without hostKey the server's key is not checked.
		cfg.HostKeyCallback = ssh.InsecureIgnoreHostKey()
		return cfg, nil
	}
	pinned := c.hostKey
	// Ask only for the pinned key's type, so a server holding several host keys presents the pinned one.
	cfg.HostKeyAlgorithms = []string{pinned.Type()}
	if pinned.Type() == ssh.KeyAlgoRSA {
		cfg.HostKeyAlgorithms = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	cfg.HostKeyCallback = func(_ string, _ net.Addr, key ssh.PublicKey) error {
		if bytes.Equal(key.Marshal(), pinned.Marshal()) {
			return nil
		}
		return &hostKeyError{fmt.Sprintf("host key mismatch for %s: the server presented %s %s but connection.hostKey pins %s %s. "+
			"Refusing to connect: another machine may be answering at this address, or the host was re-keyed (then update hostKey from `ssh-keyscan -p %d %s`)",
			c.address(), key.Type(), ssh.FingerprintSHA256(key), pinned.Type(), ssh.FingerprintSHA256(pinned), c.port, c.host)}
	}
	return cfg, nil
}

// dial connects to c (through its proxy, if any), retrying failed attempts up to dialErrorLimit times
// (-1: without limit). Each attempt, including the pause before the next one, takes at most perDialTimeout
// seconds, so a dead host fails after about dialErrorLimit × perDialTimeout.
func (d *dialer) dial(ctx context.Context, c *connection) (*ssh.Client, error) {
	cfg, err := d.clientConfig(c)
	if err != nil {
		return nil, err
	}
	var via *ssh.Client
	if c.proxy != nil {
		if via, err = d.dial(ctx, c.proxy); err != nil {
			return nil, fmt.Errorf("proxy %s for %s: %w", c.proxy, c, err)
		}
		d.closers = append(d.closers, via)
	}
	timeout := time.Duration(c.perDialTimeoutSeconds) * time.Second
	for attempt := 1; ; attempt++ {
		start := time.Now()
		client, err := dialOnce(ctx, via, c.address(), cfg, timeout)
		if err == nil {
			return client, nil
		}
		var hk *hostKeyError
		if errors.As(err, &hk) {
			return nil, hk
		}
		if c.hostKey != nil && strings.Contains(err.Error(), "no common algorithm for host key") {
			return nil, &hostKeyError{fmt.Sprintf("host key mismatch for %s: connection.hostKey pins a %s key but the server offers no host key of that type (%v)", c.address(), c.hostKey.Type(), err)}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if c.dialErrorLimit >= 0 && attempt >= c.dialErrorLimit {
			return nil, fmt.Errorf("could not connect to %s after %d attempt(s) (dialErrorLimit %d, perDialTimeout %ds): %w", c, attempt, c.dialErrorLimit, c.perDialTimeoutSeconds, err)
		}
		d.status(fmt.Sprintf("connecting to %s failed (attempt %d): %v; retrying", c, attempt, err))
		pause := time.Second
		if timeout > 0 {
			pause = min(pause, max(0, timeout-time.Since(start)))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pause):
		}
	}
}

func dialOnce(ctx context.Context, via *ssh.Client, addr string, cfg *ssh.ClientConfig, timeout time.Duration) (*ssh.Client, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var conn net.Conn
	var err error
	if via != nil {
		conn, err = via.DialContext(ctx, "tcp", addr)
	} else {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	// The SSH handshake gets what is left of the attempt's time: a server that accepts TCP but never
	// answers must not hang the operation.
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// runRemote runs one command line on the host over a new SSH connection, stdin given as-is.
func runRemote(ctx context.Context, c *connection, cmd string, stdin *string, env map[string]string, out outputSinks, status func(string), warn func(string)) (exitErr error, err error) {
	d := &dialer{status: status}
	defer d.close()
	client, err := d.dial(ctx, c)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, client)
	session, err := client.NewSession()
	if err != nil {
		return nil, fmt.Errorf("cannot open an SSH session on %s: %w", c, err)
	}
	defer session.Close()
	var refused []string
	for _, k := range sortedKeys(env) {
		if session.Setenv(k, env[k]) != nil {
			refused = append(refused, k)
		}
	}
	if len(refused) > 0 {
		warn(fmt.Sprintf("the SSH server on %s did not accept the environment variable(s) %s (its sshd_config needs AcceptEnv); the command runs without them", c, strings.Join(refused, ", ")))
	}
	if stdin != nil {
		session.Stdin = strings.NewReader(*stdin)
	}
	session.Stdout = out.stdout
	session.Stderr = out.stderr
	done := make(chan error, 1)
	go func() { done <- session.Run(cmd) }()
	select {
	case <-ctx.Done():
		_ = session.Signal(ssh.SIGKILL)
		_ = client.Close()
		return nil, fmt.Errorf("cancelled while running on %s: %w", c, ctx.Err())
	case err := <-done:
		var exit *ssh.ExitError
		var missing *ssh.ExitMissingError
		switch {
		case err == nil:
			return nil, nil
		case errors.As(err, &exit):
			return fmt.Errorf("exited with status %d on %s", exit.ExitStatus(), c), nil
		case errors.As(err, &missing):
			return fmt.Errorf("the connection to %s ended without an exit status (killed, or the server closed the session)", c), nil
		default:
			return nil, fmt.Errorf("running the command on %s: %w", c, err)
		}
	}
}
