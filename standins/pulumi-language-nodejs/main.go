// A minimal Node.js language host for the Pulumi engine, written for this repo because the upstream
// pulumi-language-nodejs Go module (github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3) is
// not tagged and so cannot be fetched through the Go module proxy. scripts/pulumi-binaries.sh builds it
// against the Pulumi SDK of the pinned CLI version.
//
// It does what the engine needs to run a program directory (`pulumi up` / preview / destroy / refresh):
// Run starts `node <program's @pulumi/pulumi>/cmd/run ...` with the same flags and environment the upstream
// host passes (monitor/engine addresses, project, stack, config, TypeScript options). RunPlugin starts
// Node.js policy packs (`pulumi preview/up --policy-pack DIR`): the engine boots a policy pack through the
// language host named by its PulumiPolicy.yaml runtime whenever that host exists, and falls back to a
// `pulumi-analyzer-policy` launcher only when it does not. Everything about plugin discovery returns nothing
// (plugins are found on PATH, automatic acquisition is off), dependency installation is refused with a
// message, and code generation, packing and Node.js resource plugins are not implemented.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
)

// Version is set by the build (-X main.Version=...): the Pulumi version whose SDK this host was built with.
var Version = "0.0.0"

// nodeJSBail is the exit code @pulumi/pulumi's run script uses after it has reported the error itself.
const nodeJSBail = 32

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer
	engineAddress string
}

func main() {
	// The engine starts language hosts as `<host> [-flags...] <engine-address>`; flags (tracing, root,
	// runtime options of older engines) are accepted and ignored.
	var engineAddress string
	for _, a := range os.Args[1:] {
		if !strings.HasPrefix(a, "-") {
			engineAddress = a
		}
	}
	h := &host{engineAddress: engineAddress}
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, h)
			return nil
		},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-nodejs: could not start the RPC server: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-nodejs: RPC server stopped: %v\n", err)
		os.Exit(1)
	}
}

func (h *host) Handshake(_ context.Context, req *pulumirpc.LanguageHandshakeRequest) (*pulumirpc.LanguageHandshakeResponse, error) {
	if req.EngineAddress != "" {
		h.engineAddress = req.EngineAddress
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *host) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: Version}, nil
}

func (h *host) GetRequiredPlugins(context.Context, *pulumirpc.GetRequiredPluginsRequest) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

func (h *host) GetRequiredPackages(context.Context, *pulumirpc.GetRequiredPackagesRequest) (*pulumirpc.GetRequiredPackagesResponse, error) {
	return &pulumirpc.GetRequiredPackagesResponse{}, nil
}

func (h *host) GetProgramDependencies(context.Context, *pulumirpc.GetProgramDependenciesRequest) (*pulumirpc.GetProgramDependenciesResponse, error) {
	return &pulumirpc.GetProgramDependenciesResponse{}, nil
}

func (h *host) RuntimeOptionsPrompts(context.Context, *pulumirpc.RuntimeOptionsRequest) (*pulumirpc.RuntimeOptionsResponse, error) {
	return &pulumirpc.RuntimeOptionsResponse{}, nil
}

func (h *host) About(context.Context, *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("node is not on PATH: %w", err)
	}
	v := strings.TrimSpace(string(out))
	return &pulumirpc.AboutResponse{Executable: "node", Version: strings.TrimPrefix(v, "v")}, nil
}

func (h *host) InstallDependencies(_ *pulumirpc.InstallDependenciesRequest, stream grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse]) error {
	return stream.Send(&pulumirpc.InstallDependenciesResponse{
		Stdout: []byte("pulumi-language-nodejs (registry-trust minimal host): run `npm ci` yourself; nothing installed\n"),
	})
}

// option reads a runtime option from Pulumi.yaml (`runtime: {name: nodejs, options: {...}}`).
func option(info *pulumirpc.ProgramInfo, name string) (any, bool) {
	if info == nil || info.Options == nil {
		return nil, false
	}
	v, ok := info.Options.AsMap()[name]
	return v, ok
}

// sdkScript finds @pulumi/pulumi's cmd/<name> from the program directory upwards, as Node would resolve it.
func sdkScript(from, name string) (string, error) {
	for dir := from; ; dir = filepath.Dir(dir) {
		p := filepath.Join(dir, "node_modules", "@pulumi", "pulumi", "cmd", name)
		if _, err := os.Stat(filepath.Join(p, "index.js")); err == nil {
			return p, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("@pulumi/pulumi (cmd/%s) is not installed for %s (run npm ci)", name, from)
		}
	}
}

// nodeArgs are the `nodeargs` runtime option's flags, placed before the script.
func nodeArgs(info *pulumirpc.ProgramInfo) []string {
	if v, ok := option(info, "nodeargs"); ok {
		if s, ok := v.(string); ok && s != "" {
			return strings.Fields(s)
		}
	}
	return nil
}

func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	programDir := req.GetPwd()
	entry := req.GetProgram()
	if info := req.GetInfo(); info != nil {
		programDir = info.ProgramDirectory
		entry = info.EntryPoint
	}
	if entry == "" {
		entry = "."
	}
	run, err := sdkScript(programDir, "run")
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}

	args := append(nodeArgs(req.GetInfo()), run)
	add := func(k, v string) {
		if v != "" {
			args = append(args, "--"+k, v)
		}
	}
	add("monitor", req.GetMonitorAddress())
	add("engine", h.engineAddress)
	add("organization", req.GetOrganization())
	add("project", req.GetProject())
	add("stack", req.GetStack())
	add("pwd", req.GetPwd())
	if info := req.GetInfo(); info != nil {
		add("root-directory", info.RootDirectory)
	}
	if req.GetDryRun() {
		args = append(args, "--dry-run")
	}
	if req.GetParallel() > 0 {
		add("parallel", fmt.Sprint(req.GetParallel()))
	}
	args = append(args, entry)
	args = append(args, req.GetArgs()...)

	config, err := json.Marshal(req.GetConfig())
	if err != nil {
		return nil, err
	}
	secretKeys, err := json.Marshal(req.GetConfigSecretKeys())
	if err != nil {
		return nil, err
	}
	typescript := "true"
	if v, ok := option(req.GetInfo(), "typescript"); ok {
		if b, ok := v.(bool); ok && !b {
			typescript = "false"
		}
	}
	env := append(os.Environ(),
		"PULUMI_CONFIG="+string(config),
		"PULUMI_CONFIG_SECRET_KEYS="+string(secretKeys),
		"PULUMI_NODEJS_TYPESCRIPT="+typescript,
	)
	if v, ok := option(req.GetInfo(), "tsconfig"); ok {
		if s, ok := v.(string); ok && s != "" {
			env = append(env, "PULUMI_NODEJS_TSCONFIG_PATH="+s)
		}
	}

	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Dir = req.GetPwd()
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	cmd.Env = env
	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			if status, ok := exitErr.Sys().(syscall.WaitStatus); ok {
				if status.ExitStatus() == nodeJSBail {
					return &pulumirpc.RunResponse{Bail: true}, nil
				}
				return &pulumirpc.RunResponse{Error: fmt.Sprintf("Program exited with non-zero exit code: %d", status.ExitStatus())}, nil
			}
			return &pulumirpc.RunResponse{Error: fmt.Sprintf("Program exited unexpectedly: %v", exitErr)}, nil
		}
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("Problem executing program (could not run node): %v", err)}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}

// RunPlugin starts a Node.js policy pack (kind "analyzer") the way @pulumi/pulumi expects it:
// `node <pack's @pulumi/pulumi>/cmd/run-policy-pack <engine-address> <pack directory>`. The engine passes the
// engine address (plus its logging flags) in Args, the full environment in Env, and reads the pack's gRPC
// port from the first line of stdout, so stdout and stderr are streamed back unchanged, then the exit code.
// The pack runs in its own directory, as the engine's legacy launcher path does, so that its tsconfig.json
// (if any) and node_modules resolution are the pack's and not the stack program's. The stack's config reaches
// the pack over the Analyzer ConfigureStack call, not through this process's environment.
func (h *host) RunPlugin(req *pulumirpc.RunPluginRequest, stream grpc.ServerStreamingServer[pulumirpc.RunPluginResponse]) error {
	if req.GetKind() != "analyzer" {
		return fmt.Errorf("pulumi-language-nodejs (registry-trust minimal host): %q plugins written in Node.js are not supported, only policy packs", req.GetKind())
	}
	info := req.GetInfo()
	if info == nil || info.ProgramDirectory == "" {
		return errors.New("pulumi-language-nodejs: RunPlugin needs the policy pack's program info")
	}
	packDir := info.ProgramDirectory
	run, err := sdkScript(packDir, "run-policy-pack")
	if err != nil {
		return err
	}
	args := append(nodeArgs(info), run)
	args = append(args, req.GetArgs()...)
	args = append(args, packDir)

	ctx := stream.Context()
	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Dir = packDir
	cmd.Env = req.GetEnv()
	if len(cmd.Env) == 0 {
		cmd.Env = os.Environ()
	}
	// Responses are sent from two goroutines (stdout, stderr); a gRPC stream allows one sender at a time.
	sends := make(chan *pulumirpc.RunPluginResponse)
	sendErr := make(chan error, 1)
	go func() {
		var first error
		for r := range sends {
			if first == nil {
				first = stream.Send(r)
			}
		}
		sendErr <- first
	}()
	forward := func(r io.Reader, wrap func([]byte) *pulumirpc.RunPluginResponse) <-chan struct{} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 32*1024)
			for {
				n, err := r.Read(buf)
				if n > 0 {
					sends <- wrap(append([]byte(nil), buf[:n]...))
				}
				if err != nil {
					return
				}
			}
		}()
		return done
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		close(sends)
		<-sendErr
		return fmt.Errorf("pulumi-language-nodejs: could not run node for policy pack %s: %w", packDir, err)
	}
	outDone := forward(stdout, func(b []byte) *pulumirpc.RunPluginResponse {
		return &pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stdout{Stdout: b}}
	})
	errDone := forward(stderr, func(b []byte) *pulumirpc.RunPluginResponse {
		return &pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stderr{Stderr: b}}
	})
	// Both pipes must be drained before Wait closes them.
	<-outDone
	<-errDone
	code := int32(0)
	if err := cmd.Wait(); err != nil {
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) {
			close(sends)
			<-sendErr
			return fmt.Errorf("pulumi-language-nodejs: policy pack %s: %w", packDir, err)
		}
		code = int32(exitErr.ExitCode())
	}
	sends <- &pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Exitcode{Exitcode: code}}
	close(sends)
	return <-sendErr
}
