// pulumi-resource-command: registry-trust's OWN stand-in for the @pulumi/command 1.2.1 resource plugin, for
// the lab and CI only. Users with a normal Pulumi install get the upstream plugin and never this one.
//
// Why it exists: the upstream plugin's Go module (github.com/pulumi/pulumi-command/provider) has no version
// the Go module proxy will serve here, so the real engine could not run NodeTrust's remote commands. This is
// a clean-room implementation of the same wire contract (tokens, property names, defaults and documented
// behaviour of @pulumi/command 1.2.1) for what this repository uses:
//
//   - command:remote:Command  create/update/delete over SSH (x/crypto/ssh), stdin, environment, triggers,
//     addPreviousOutputInEnv, logging; pinned hostKey; password, private key or agent auth; one
//     proxy (jump) host; bounded dial retries.
//   - command:local:Command   the same lifecycle run by a local interpreter (no assetPaths/archivePaths).
//
// Not implemented (refused with a message, never silently ignored): remote.CopyFile/CopyToRemote, the
// local/remote run functions, local asset and archive collection. See docs/pulumi-engine.md.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// Version is what the plugin reports: the @pulumi/command version whose contract it serves, which is also
// the version the SDK asks the engine for. Set by the build (-X main.Version=...).
var Version = "1.2.1"

func main() {
	// The engine starts resource plugins as `<plugin> [flags...] <engine-address>`; flags (logging, tracing)
	// are accepted and ignored.
	var engineAddress string
	if n := len(os.Args); n > 1 && !strings.HasPrefix(os.Args[n-1], "-") {
		engineAddress = os.Args[n-1]
	}
	logger, err := newEngineLogger(engineAddress)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-command: cannot reach the engine at %q: %v\n", engineAddress, err)
		os.Exit(1)
	}
	p := newProvider(logger)
	// An engine that goes away without stopping the plugin (killed, crashed) must not leave it, or the
	// commands it runs, behind: the health check cancels everything and stops the server.
	stop := make(chan bool)
	if engineAddress != "" {
		ctx, cancel := context.WithCancel(context.Background())
		if err := rpcutil.Healthcheck(ctx, engineAddress, 5*time.Minute, cancel); err != nil {
			fmt.Fprintf(os.Stderr, "pulumi-resource-command: cannot watch the engine at %q: %v\n", engineAddress, err)
			os.Exit(1)
		}
		go func() {
			<-ctx.Done()
			p.cancel()
			close(stop)
		}()
	}
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: stop,
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterResourceProviderServer(srv, p)
			return nil
		},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-command: could not start the RPC server: %v\n", err)
		os.Exit(1)
	}
	// The plugin protocol: the engine reads the port from the first line of stdout.
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-command: %v\n", err)
		os.Exit(1)
	}
}
