package main

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

const (
	remoteCommandType = "command:remote:Command"
	localCommandType  = "command:local:Command"
)

// The property names and defaults of @pulumi/command 1.2.1 (its SDK's types/input.d.ts and schema).
var (
	commonKeys  = []string{"addPreviousOutputInEnv", "create", "delete", "environment", "logging", "stdin", "triggers", "update"}
	remoteKeys  = append([]string{"connection"}, commonKeys...)
	localKeys   = append([]string{"dir", "interpreter", "assetPaths", "archivePaths"}, commonKeys...)
	outputKeys  = []string{"stdout", "stderr"}
	connKeys    = []string{"host", "port", "user", "password", "privateKey", "privateKeyPassword", "agentSocketPath", "dialErrorLimit", "perDialTimeout", "hostKey", "proxy"}
	loggingKind = []string{"stdout", "stderr", "stdoutAndStderr", "none"}
)

const (
	defaultPort           = 22
	defaultUser           = "root"
	defaultDialErrorLimit = 10
	defaultPerDialTimeout = 15
)

// connection is a validated remote connection; empty strings mean "not given".
type connection struct {
	host, user                            string
	port                                  int
	password, privateKey, privateKeyPass  string
	agentSocketPath                       string
	hostKey                               ssh.PublicKey
	dialErrorLimit, perDialTimeoutSeconds int
	proxy                                 *connection
}

func (c *connection) address() string { return fmt.Sprintf("%s:%d", c.host, c.port) }
func (c *connection) String() string  { return fmt.Sprintf("%s@%s", c.user, c.address()) }

// command is a validated Command resource's inputs.
type command struct {
	typ                    string
	create, update, delete string
	stdin                  *string
	environment            map[string]string
	addPreviousOutputInEnv bool
	logging                string
	conn                   *connection // remote only
	interpreter            []string    // local only
	dir                    string      // local only
}

// problems collects every mistake in one pass, each naming the property path.
type problems []problem

type problem struct{ property, reason string }

func (ps *problems) add(property, format string, args ...any) {
	*ps = append(*ps, problem{property, fmt.Sprintf(format, args...)})
}

func (ps problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.property + ": " + p.reason
	}
	return strings.Join(lines, "; ")
}

func inputKeys(typ string) []string {
	if typ == localCommandType {
		return localKeys
	}
	return remoteKeys
}

// withDefaults returns the inputs with the SDK's documented defaults filled in (port 22, user root,
// dialErrorLimit 10, perDialTimeout 15 for the connection and its proxy), as the upstream plugin's Check does.
func withDefaults(typ string, in resource.PropertyMap) resource.PropertyMap {
	out := in.Copy()
	if typ != remoteCommandType {
		return out
	}
	if c, ok := out["connection"]; ok && c.IsObject() {
		conn := connectionDefaults(c.ObjectValue())
		if p, ok := conn["proxy"]; ok && p.IsObject() {
			conn["proxy"] = resource.NewObjectProperty(connectionDefaults(p.ObjectValue()))
		}
		out["connection"] = resource.NewObjectProperty(conn)
	}
	return out
}

func connectionDefaults(in resource.PropertyMap) resource.PropertyMap {
	out := in.Copy()
	set := func(k string, v resource.PropertyValue) {
		if cur, ok := out[resource.PropertyKey(k)]; !ok || cur.IsNull() {
			out[resource.PropertyKey(k)] = v
		}
	}
	set("port", resource.NewNumberProperty(defaultPort))
	set("user", resource.NewStringProperty(defaultUser))
	set("dialErrorLimit", resource.NewNumberProperty(defaultDialErrorLimit))
	set("perDialTimeout", resource.NewNumberProperty(defaultPerDialTimeout))
	return out
}

// decodeCommand validates inputs. Unknown values (preview) are skipped: they are checked once known.
// Error texts never quote a password or key, only name them.
func decodeCommand(typ string, in resource.PropertyMap) (*command, problems) {
	var ps problems
	known := map[string]bool{}
	for _, k := range inputKeys(typ) {
		known[k] = true
	}
	var unknown []string
	for k := range in {
		if !known[string(k)] && !strings.HasPrefix(string(k), "__") {
			unknown = append(unknown, string(k))
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		ps.add(k, "is not a property of %s (this stand-in plugin serves the @pulumi/command 1.2.1 properties %s)", typ, strings.Join(inputKeys(typ), ", "))
	}

	c := &command{typ: typ, addPreviousOutputInEnv: true, logging: "stdoutAndStderr"}
	c.create = optString(in, "create", &ps)
	c.update = optString(in, "update", &ps)
	c.delete = optString(in, "delete", &ps)
	if v, ok := present(in, "stdin"); ok && !v.ContainsUnknowns() {
		if v.IsString() {
			s := v.StringValue()
			c.stdin = &s
		} else {
			ps.add("stdin", "must be a string, got %s", v.TypeString())
		}
	}
	if v, ok := present(in, "addPreviousOutputInEnv"); ok && !v.ContainsUnknowns() {
		if v.IsBool() {
			c.addPreviousOutputInEnv = v.BoolValue()
		} else {
			ps.add("addPreviousOutputInEnv", "must be true or false, got %s", v.TypeString())
		}
	}
	if s := optString(in, "logging", &ps); s != "" {
		if !contains(loggingKind, s) {
			ps.add("logging", "%q is not one of %s", s, strings.Join(loggingKind, ", "))
		}
		c.logging = s
	}
	if v, ok := present(in, "environment"); ok && !v.ContainsUnknowns() {
		if !v.IsObject() {
			ps.add("environment", "must be a map of strings, got %s", v.TypeString())
		} else {
			c.environment = map[string]string{}
			for k, ev := range v.ObjectValue() {
				if !ev.IsString() {
					ps.add("environment."+string(k), "must be a string, got %s", ev.TypeString())
					continue
				}
				c.environment[string(k)] = ev.StringValue()
			}
		}
	}
	if v, ok := present(in, "triggers"); ok && !v.ContainsUnknowns() && !v.IsArray() {
		ps.add("triggers", "must be a list, got %s", v.TypeString())
	}

	switch typ {
	case remoteCommandType:
		v, ok := present(in, "connection")
		switch {
		case !ok:
			ps.add("connection", "is required: the host to run the command on")
		case v.IsComputed():
		case !v.IsObject():
			ps.add("connection", "must be an object, got %s", v.TypeString())
		default:
			c.conn = decodeConnection("connection", v.ObjectValue(), true, &ps)
		}
	case localCommandType:
		c.dir = optString(in, "dir", &ps)
		c.interpreter = []string{"/bin/sh", "-c"}
		if v, ok := present(in, "interpreter"); ok && !v.ContainsUnknowns() {
			if !v.IsArray() || len(v.ArrayValue()) == 0 {
				ps.add("interpreter", "must be a non-empty list of strings such as [\"/bin/sh\", \"-c\"]")
			} else {
				c.interpreter = nil
				for _, e := range v.ArrayValue() {
					if !e.IsString() {
						ps.add("interpreter", "must be a list of strings, got a %s element", e.TypeString())
						break
					}
					c.interpreter = append(c.interpreter, e.StringValue())
				}
			}
		}
		for _, k := range []string{"assetPaths", "archivePaths"} {
			if v, ok := present(in, k); ok && !(v.IsArray() && len(v.ArrayValue()) == 0) {
				ps.add(k, "is not supported by registry-trust's stand-in command plugin (docs/pulumi-engine.md); use the upstream plugin from a normal Pulumi install")
			}
		}
	}
	return c, ps
}

func decodeConnection(path string, in resource.PropertyMap, allowProxy bool, ps *problems) *connection {
	c := &connection{port: defaultPort, user: defaultUser, dialErrorLimit: defaultDialErrorLimit, perDialTimeoutSeconds: defaultPerDialTimeout}
	for k := range in {
		if !contains(connKeys, string(k)) || (!allowProxy && k == "proxy") {
			ps.add(path+"."+string(k), "is not a connection property (expected one of %s)", strings.Join(connKeys, ", "))
		}
	}
	c.host = optString(in, "host", ps, path)
	if v, ok := present(in, "host"); !ok {
		ps.add(path+".host", "is required: the address of the host to connect to")
	} else if !v.ContainsUnknowns() && (c.host == "" || strings.ContainsAny(c.host, " \t\r\n/")) {
		ps.add(path+".host", "%q is not a host name or IP address", c.host)
	}
	if n, ok := optInt(in, "port", ps, path); ok {
		if n < 1 || n > 65535 {
			ps.add(path+".port", "%d is not a TCP port (1-65535)", n)
		}
		c.port = n
	}
	if v, ok := present(in, "user"); ok && !v.ContainsUnknowns() {
		c.user = optString(in, "user", ps, path)
		if c.user == "" {
			ps.add(path+".user", "must not be empty")
		}
	}
	c.password = optString(in, "password", ps, path)
	c.privateKey = optString(in, "privateKey", ps, path)
	c.privateKeyPass = optString(in, "privateKeyPassword", ps, path)
	c.agentSocketPath = optString(in, "agentSocketPath", ps, path)
	if c.privateKey != "" {
		if _, err := parseSigner(c.privateKey, c.privateKeyPass); err != nil {
			ps.add(path+".privateKey", "%v", err)
		}
	}
	if n, ok := optInt(in, "dialErrorLimit", ps, path); ok {
		// As upstream: n failed attempts are allowed (n+1 dials), 0 means a single dial, -1 (any negative) no limit.
		c.dialErrorLimit = n
	}
	if n, ok := optInt(in, "perDialTimeout", ps, path); ok {
		if n < 0 {
			ps.add(path+".perDialTimeout", "%d: must be 0 (no maximum) or a number of seconds", n)
		}
		c.perDialTimeoutSeconds = n
	}
	if s := optString(in, "hostKey", ps, path); s != "" {
		key, err := parseHostKey(s)
		if err != nil {
			ps.add(path+".hostKey", "%v", err)
		}
		c.hostKey = key
	}
	if v, ok := present(in, "proxy"); ok && allowProxy && !v.IsComputed() {
		if !v.IsObject() {
			ps.add(path+".proxy", "must be an object, got %s", v.TypeString())
		} else {
			c.proxy = decodeConnection(path+".proxy", v.ObjectValue(), false, ps)
		}
	}
	return c
}

// parseHostKey reads hostKey as upstream does (ssh.ParseAuthorizedKey): "ssh-ed25519 AAAA… [comment]", as
// ssh-keyscan prints it without the host. Upstream finds a bad hostKey only when it dials; here Check does.
func parseHostKey(s string) (ssh.PublicKey, error) {
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("failed to parse host key: %v: expected a line such as \"ssh-ed25519 AAAAC3…\" (ssh-keyscan -t ed25519 HOST | cut -d' ' -f2-)", err)
	}
	return key, nil
}

// parseSigner never puts key material into its errors.
func parseSigner(key, passphrase string) (ssh.Signer, error) {
	var signer ssh.Signer
	var err error
	if passphrase != "" {
		signer, err = ssh.ParsePrivateKeyWithPassphrase([]byte(key), []byte(passphrase))
	} else {
		signer, err = ssh.ParsePrivateKey([]byte(key))
	}
	if err == nil {
		return signer, nil
	}
	if _, missing := err.(*ssh.PassphraseMissingError); missing {
		return nil, fmt.Errorf("the private key is encrypted: set privateKeyPassword")
	}
	return nil, fmt.Errorf("is not a private key the SSH client can read (PEM or OpenSSH format): %v", err)
}

func present(in resource.PropertyMap, key string) (resource.PropertyValue, bool) {
	v, ok := in[resource.PropertyKey(key)]
	if !ok || v.IsNull() {
		return resource.PropertyValue{}, false
	}
	return v, true
}

func optString(in resource.PropertyMap, key string, ps *problems, prefix ...string) string {
	v, ok := present(in, key)
	if !ok || v.ContainsUnknowns() {
		return ""
	}
	if !v.IsString() {
		ps.add(strings.Join(append(prefix, key), "."), "must be a string, got %s", v.TypeString())
		return ""
	}
	return v.StringValue()
}

func optInt(in resource.PropertyMap, key string, ps *problems, prefix string) (int, bool) {
	v, ok := present(in, key)
	if !ok || v.ContainsUnknowns() {
		return 0, false
	}
	if !v.IsNumber() || v.NumberValue() != math.Trunc(v.NumberValue()) {
		ps.add(prefix+"."+key, "must be a whole number, got %v", v.V)
		return 0, false
	}
	return int(v.NumberValue()), true
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
