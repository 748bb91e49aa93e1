package main

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// engineLogger sends messages to the engine's diagnostics, attached to a resource. Without an engine
// address (a plugin started by hand) messages are dropped.
type engineLogger struct {
	client pulumirpc.EngineClient
}

func newEngineLogger(address string) (*engineLogger, error) {
	if address == "" {
		return &engineLogger{}, nil
	}
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()), rpcutil.GrpcChannelOptions())
	if err != nil {
		return nil, err
	}
	return &engineLogger{client: pulumirpc.NewEngineClient(conn)}, nil
}

// log never fails the operation: a lost log line must not fail a command that succeeded.
func (l *engineLogger) log(urn string, severity pulumirpc.LogSeverity, ephemeral bool, msg string) {
	if l.client == nil {
		return
	}
	_, _ = l.client.Log(context.Background(), &pulumirpc.LogRequest{Severity: severity, Message: msg, Urn: urn, Ephemeral: ephemeral})
}

func (l *engineLogger) warn(urn, msg string) { l.log(urn, pulumirpc.LogSeverity_WARNING, false, msg) }

// status is shown while the resource is in progress (dial retries, output lines) but not kept as a diagnostic.
func (l *engineLogger) status(urn, msg string) { l.log(urn, pulumirpc.LogSeverity_INFO, true, msg) }
