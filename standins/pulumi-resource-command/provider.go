package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/urn"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

type provider struct {
	pulumirpc.UnimplementedResourceProviderServer
	log *engineLogger
	// ctx is cancelled by the engine's Cancel (Ctrl-C): running commands are killed, not waited for.
	ctx    context.Context
	cancel context.CancelFunc
}

func newProvider(log *engineLogger) *provider {
	ctx, cancel := context.WithCancel(context.Background())
	return &provider{log: log, ctx: ctx, cancel: cancel}
}

// The plugin does not take secrets: the engine hands it plain values and marks every output whose input
// was secret (connection, as the SDK always wraps it) as secret again, in state and in outputs.
func (p *provider) Handshake(context.Context, *pulumirpc.ProviderHandshakeRequest) (*pulumirpc.ProviderHandshakeResponse, error) {
	return &pulumirpc.ProviderHandshakeResponse{}, nil
}

func (p *provider) Configure(context.Context, *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	return &pulumirpc.ConfigureResponse{SupportsPreview: true}, nil
}

func (p *provider) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: Version}, nil
}

// GetSchema returns a minimal schema: the package name and version and the two resource tokens. Programs
// use the published @pulumi/command SDK, which needs no schema from the plugin.
func (p *provider) GetSchema(context.Context, *pulumirpc.GetSchemaRequest) (*pulumirpc.GetSchemaResponse, error) {
	schema := fmt.Sprintf(`{"name":"command","version":%q,"description":"registry-trust's stand-in for the @pulumi/command plugin (lab/CI only)",`+
		`"resources":{%q:{"description":"A command run on a remote host over SSH."},%q:{"description":"A command run locally."}}}`,
		Version, remoteCommandType, localCommandType)
	return &pulumirpc.GetSchemaResponse{Schema: schema}, nil
}

// The provider itself has no configuration.
func (p *provider) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (p *provider) DiffConfig(context.Context, *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
}

func (p *provider) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	p.cancel()
	return &emptypb.Empty{}, nil
}

func (p *provider) Invoke(_ context.Context, req *pulumirpc.InvokeRequest) (*pulumirpc.InvokeResponse, error) {
	return nil, status.Errorf(codes.Unimplemented, "%s is not implemented by registry-trust's stand-in command plugin (it serves command:remote:Command and command:local:Command only; docs/pulumi-engine.md)", req.GetTok())
}

func resourceType(typ, u string) (string, error) {
	if typ == "" {
		typ = string(urn.URN(u).Type())
	}
	if typ != remoteCommandType && typ != localCommandType {
		return "", status.Errorf(codes.InvalidArgument, "%s is not implemented by registry-trust's stand-in command plugin (it serves %s and %s only; docs/pulumi-engine.md)", typ, remoteCommandType, localCommandType)
	}
	return typ, nil
}

var marshalOpts = plugin.MarshalOptions{KeepUnknowns: true, SkipNulls: true}

func unmarshal(s *structpb.Struct) (resource.PropertyMap, error) {
	if s == nil {
		return resource.PropertyMap{}, nil
	}
	return plugin.UnmarshalProperties(s, marshalOpts)
}

func marshal(m resource.PropertyMap) (*structpb.Struct, error) {
	return plugin.MarshalProperties(m, marshalOpts)
}

func (p *provider) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	typ, err := resourceType(req.GetType(), req.GetUrn())
	if err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	news = withDefaults(typ, news)
	_, ps := decodeCommand(typ, news)
	var failures []*pulumirpc.CheckFailure
	for _, pr := range ps {
		failures = append(failures, &pulumirpc.CheckFailure{Property: pr.property, Reason: pr.reason})
	}
	inputs, err := marshal(news)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CheckResponse{Inputs: inputs, Failures: failures}, nil
}

// Diff compares the inputs. A change of triggers replaces the resource (as @pulumi/command 1.2.1 declares
// with replaceOnChanges "triggers[*]"); any other change is an in-place update, which runs `update`, or
// `create` when there is no update command.
func (p *provider) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	typ, err := resourceType(req.GetType(), req.GetUrn())
	if err != nil {
		return nil, err
	}
	olds, err := oldInputs(req.GetOldInputs(), req.GetOlds())
	if err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	ignored := map[string]bool{}
	for _, k := range req.GetIgnoreChanges() {
		ignored[k] = true
	}
	detailed := map[string]*pulumirpc.PropertyDiff{}
	var changes, replaces []string
	for _, k := range inputKeys(typ) {
		if ignored[k] {
			continue
		}
		o, hasOld := present(olds, k)
		n, hasNew := present(news, k)
		var kind pulumirpc.PropertyDiff_Kind
		switch {
		case !hasOld && !hasNew:
			continue
		case !hasOld:
			kind = pulumirpc.PropertyDiff_ADD
		case !hasNew:
			kind = pulumirpc.PropertyDiff_DELETE
		case n.ContainsUnknowns() || !o.DeepEquals(n):
			kind = pulumirpc.PropertyDiff_UPDATE
		default:
			continue
		}
		changes = append(changes, k)
		if k == "triggers" {
			replaces = append(replaces, k)
			kind = map[pulumirpc.PropertyDiff_Kind]pulumirpc.PropertyDiff_Kind{
				pulumirpc.PropertyDiff_ADD:    pulumirpc.PropertyDiff_ADD_REPLACE,
				pulumirpc.PropertyDiff_DELETE: pulumirpc.PropertyDiff_DELETE_REPLACE,
				pulumirpc.PropertyDiff_UPDATE: pulumirpc.PropertyDiff_UPDATE_REPLACE,
			}[kind]
		}
		detailed[k] = &pulumirpc.PropertyDiff{Kind: kind, InputDiff: true}
	}
	sort.Strings(changes)
	resp := &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE, HasDetailedDiff: true, DetailedDiff: detailed}
	if len(changes) > 0 {
		resp.Changes = pulumirpc.DiffResponse_DIFF_SOME
		resp.Diffs = changes
		resp.Replaces = replaces
	}
	return resp, nil
}

// oldInputs are the stored inputs; states written without them fall back to the outputs minus stdout/stderr.
func oldInputs(inputs, outputs *structpb.Struct) (resource.PropertyMap, error) {
	if len(inputs.GetFields()) > 0 {
		return unmarshal(inputs)
	}
	olds, err := unmarshal(outputs)
	if err != nil {
		return nil, err
	}
	for _, k := range outputKeys {
		delete(olds, resource.PropertyKey(k))
	}
	return olds, nil
}

func (p *provider) decode(typ string, props resource.PropertyMap) (*command, error) {
	c, ps := decodeCommand(typ, props)
	if len(ps) > 0 {
		return nil, status.Errorf(codes.InvalidArgument, "invalid inputs: %s", ps.Error())
	}
	return c, nil
}

// withOutputs is what the engine stores: the inputs plus stdout and stderr (unknown during a preview).
func withOutputs(in resource.PropertyMap, r *run) (*structpb.Struct, error) {
	out := in.Copy()
	if r == nil {
		out["stdout"] = resource.MakeComputed(resource.NewStringProperty(""))
		out["stderr"] = resource.MakeComputed(resource.NewStringProperty(""))
	} else {
		out["stdout"] = resource.NewStringProperty(r.stdout)
		out["stderr"] = resource.NewStringProperty(r.stderr)
	}
	return marshal(out)
}

func (p *provider) opContext(timeoutSeconds float64) (context.Context, context.CancelFunc) {
	if timeoutSeconds > 0 {
		return context.WithTimeout(p.ctx, time.Duration(timeoutSeconds*float64(time.Second)))
	}
	return context.WithCancel(p.ctx)
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (p *provider) Create(_ context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	props, err := p.runCommand(req.GetType(), req.GetUrn(), req.GetProperties(), req.GetPreview(), req.GetTimeout(),
		func(c *command) *run { return &run{line: c.create, env: c.environment} })
	if err != nil || req.GetPreview() {
		return &pulumirpc.CreateResponse{Properties: props}, err
	}
	return &pulumirpc.CreateResponse{Id: newID(), Properties: props}, nil
}

func (p *provider) Update(_ context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	olds, err := unmarshal(req.GetOlds())
	if err != nil {
		return nil, err
	}
	props, err := p.runCommand(req.GetType(), req.GetUrn(), req.GetNews(), req.GetPreview(), req.GetTimeout(), func(c *command) *run {
		if c.update == "" {
			return &run{line: c.create, env: c.environment, prevEnv: previousOutputEnv(c, olds)}
		}
		return &run{line: c.update, env: c.environment, prevEnv: previousOutputEnv(c, olds)}
	})
	return &pulumirpc.UpdateResponse{Properties: props}, err
}

// runCommand is Create's and Update's shared body: decode the inputs, run the command pick chooses (nothing
// in a preview or when its line is empty), and return the inputs plus stdout/stderr.
func (p *provider) runCommand(typeName, urn string, news *structpb.Struct, preview bool, timeout float64, pick func(*command) *run) (*structpb.Struct, error) {
	typ, err := resourceType(typeName, urn)
	if err != nil {
		return nil, err
	}
	in, err := unmarshal(news)
	if err != nil {
		return nil, err
	}
	if preview {
		return withOutputs(in, nil)
	}
	c, err := p.decode(typ, in)
	if err != nil {
		return nil, err
	}
	r := pick(c)
	if r.line != "" {
		ctx, cancel := p.opContext(timeout)
		defer cancel()
		if err := p.execute(ctx, urn, c, r); err != nil {
			return nil, err
		}
	}
	return withOutputs(in, r)
}

// Delete runs the stored delete command with the stored inputs (connection, stdin, environment).
func (p *provider) Delete(_ context.Context, req *pulumirpc.DeleteRequest) (*emptypb.Empty, error) {
	typ, err := resourceType(req.GetType(), req.GetUrn())
	if err != nil {
		return nil, err
	}
	state, err := unmarshal(req.GetProperties())
	if err != nil {
		return nil, err
	}
	in, err := oldInputs(req.GetOldInputs(), req.GetProperties())
	if err != nil {
		return nil, err
	}
	c, err := p.decode(typ, in)
	if err != nil {
		return nil, err
	}
	if c.delete == "" {
		return &emptypb.Empty{}, nil
	}
	ctx, cancel := p.opContext(req.GetTimeout())
	defer cancel()
	if err := p.execute(ctx, req.GetUrn(), c, &run{line: c.delete, env: c.environment, prevEnv: previousOutputEnv(c, state)}); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// Read (refresh) keeps the state as it is: a command's effect cannot be read back.
func (p *provider) Read(_ context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	if _, err := resourceType(req.GetType(), req.GetUrn()); err != nil {
		return nil, err
	}
	inputs := req.GetInputs()
	if len(inputs.GetFields()) == 0 {
		olds, err := oldInputs(nil, req.GetProperties())
		if err != nil {
			return nil, err
		}
		if inputs, err = marshal(olds); err != nil {
			return nil, err
		}
	}
	return &pulumirpc.ReadResponse{Id: req.GetId(), Properties: req.GetProperties(), Inputs: inputs}, nil
}

// previousOutputEnv: unless addPreviousOutputInEnv is false, the previous run's non-empty stdout and stderr
// as PULUMI_COMMAND_STDOUT / PULUMI_COMMAND_STDERR (upstream sets them only when non-empty).
func previousOutputEnv(c *command, state resource.PropertyMap) map[string]string {
	env := map[string]string{}
	if !c.addPreviousOutputInEnv {
		return env
	}
	for key, name := range map[string]string{"stdout": "PULUMI_COMMAND_STDOUT", "stderr": "PULUMI_COMMAND_STDERR"} {
		if v, ok := present(state, key); ok && v.IsString() && v.StringValue() != "" {
			env[name] = v.StringValue()
		}
	}
	return env
}
