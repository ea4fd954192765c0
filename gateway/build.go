package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"

	"github.com/parachute-gateway/parachute/audit"
	"github.com/parachute-gateway/parachute/connectors"
	"github.com/parachute-gateway/parachute/connectors/discord"
	"github.com/parachute-gateway/parachute/connectors/local"
	"github.com/parachute-gateway/parachute/connectors/matrix"
	"github.com/parachute-gateway/parachute/connectors/telegram"
	"github.com/parachute-gateway/parachute/engine"
	"github.com/parachute-gateway/parachute/runtime"
	"github.com/parachute-gateway/parachute/sessions"
	"github.com/rs/zerolog"
)

// DefaultContainerdSocket is where the gateway looks for containerd when
// the config names no socket.
const DefaultContainerdSocket = "/run/containerd/containerd.sock"

// runtimes makes the sandbox runtimes: containerd always, the direct
// host runner only when some private connector allows direct trust.
func (g *Gateway) runtimes(ctx context.Context) (map[string]sessions.Sandboxes, error) {
	addr := g.cfg.Runtime.Socket
	if addr == "" {
		addr = DefaultContainerdSocket
	}
	// gRPC reads a relative path's first element as an authority.
	if abs, err := filepath.Abs(addr); err == nil {
		addr = abs
	}
	c, err := runtime.NewContainerd(ctx, g.containerdOptions(addr))
	if err != nil {
		return nil, fmt.Errorf("runtime.containerd_socket: %w (run `parachute doctor`)", err)
	}
	g.closers = append(g.closers, func(context.Context) { c.Close() })
	// Workspace disk images (disk_mb) are unmounted when the gateway stops.
	g.closers = append(g.closers, func(context.Context) { runtime.ReleaseDisks() })
	g.procs = c
	if n, err := c.RemoveOrphans(ctx); err != nil {
		return nil, fmt.Errorf("runtime: removing orphan sandboxes: %w", err)
	} else if n > 0 {
		g.log.Warn().Int("removed", n).Msg("removed sandboxes left by an earlier run")
	}
	rts := map[string]sessions.Sandboxes{"containerd": c}
	if n := g.cfg.Runtime.WarmPool; n > 0 {
		pool, err := c.NewPool(runtime.PoolOptions{Dir: filepath.Join(g.cfg.StateDir, "pool"), Size: n, Max: g.cfg.Runtime.WarmPoolMax})
		if err != nil {
			return nil, fmt.Errorf("runtime.warm_pool: %w", err)
		}
		g.closers = append(g.closers, func(ctx context.Context) {
			if err := pool.Close(ctx); err != nil {
				g.log.Error().Err(err).Msg("warm pool not fully removed at shutdown (containerd slow or wedged); the next start removes what is left")
			}
		})
		g.pool = pool
		rts["containerd"] = pool
	}
	for _, k := range g.cfg.Connectors {
		if k != nil && k.AllowDirect && !k.Public {
			rts["direct"] = runtime.NewDirect(runtime.DirectOptions{})
			break
		}
	}
	return rts, nil
}

// containerdOptions are the containerd runtime's options from the config.
func (g *Gateway) containerdOptions(addr string) runtime.ContainerdOptions {
	return runtime.ContainerdOptions{
		Address:    addr,
		Namespace:  g.cfg.Runtime.Namespace,
		SeccompDir: filepath.Join(g.cfg.Policies, "seccomp"),
		// Workspace disk images (disk_mb); the runtime classes (runc,
		// gvisor) are the runtime's own, chosen per session by policy.
		DiskDir: filepath.Join(g.cfg.StateDir, "disks"),
		// runtime.init_exec: false is the switch back to runc exec per turn.
		NoInitExec: !g.cfg.Runtime.InitExecOn(),
		// The init channel's refusals (a peer that is not PID 1) and
		// fallbacks to runc exec go to the gateway's own log.
		Logger: runtimeLogger(g.log),
	}
}

// runtimeLogger routes the runtime's slog output (init channel refusals
// and fallbacks) into the gateway's zerolog logger, tagged
// component=runtime, at the gateway's own level.
func runtimeLogger(log zerolog.Logger) *slog.Logger {
	return slog.New(zerolog.NewSlogHandler(log.With().Str("component", "runtime").Logger()))
}

// connectors makes one connector per config entry, sorted by name.
func (g *Gateway) connectors() ([]connectors.Connector, error) {
	names := make([]string, 0, len(g.cfg.Connectors))
	for n := range g.cfg.Connectors {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []connectors.Connector
	for _, name := range names {
		k := g.cfg.Connectors[name]
		field := "connectors." + name
		var c connectors.Connector
		var err error
		switch k.Type {
		case "local":
			c, err = local.New(local.Options{Name: name, Listen: k.Listen, Socket: k.Socket,
				Token: g.getenv(k.TokenEnv), TokenEnv: k.TokenEnv})
		case "telegram":
			endpoint := k.APIEndpoint
			if endpoint != "" && !strings.Contains(endpoint, "%s") {
				endpoint = strings.TrimRight(endpoint, "/") + "/bot%s/%s"
			}
			c, err = telegram.New(telegram.Options{
				Name: name, Token: g.getenv(k.TokenEnv), Endpoint: endpoint,
				WebhookListen: k.WebhookListen, WebhookSecret: g.getenv(k.WebhookSecret),
				WebhookURL: k.WebhookURL, DropPending: k.DropPendingUpdates == nil || *k.DropPendingUpdates,
				Logger: g.log,
			})
		case "discord":
			c, err = discord.New(discord.Options{Name: name, Token: g.getenv(k.TokenEnv), Logger: g.log})
		case "matrix":
			var enc *matrix.Encryption
			if k.Encryption {
				enc = &matrix.Encryption{StorePath: g.cfg.CryptoStorePath(name),
					PickleKey: []byte(g.getenv(k.PickleKeyEnv)), RecoveryKey: g.getenv(k.RecoveryKeyEnv)}
			}
			c, err = matrix.New(matrix.Options{Name: name, Homeserver: k.Homeserver, UserID: k.UserID,
				AccessToken: g.getenv(k.AccessTokenEnv), Logger: g.log,
				Encryption: enc, Recorder: matrixRecorder{connector: name, log: g.emit}})
		default:
			err = fmt.Errorf("type %q is not supported by this build", k.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// countingRuntime counts sandbox starts and failures.
type countingRuntime struct {
	next sessions.Sandboxes
	name string
	m    *metrics
}

func (c countingRuntime) Start(ctx context.Context, s runtime.Spec) (runtime.Sandbox, error) {
	sb, err := c.next.Start(ctx, s)
	result := "ok"
	if err != nil {
		result = "error"
	}
	c.m.sandboxStarts.WithLabelValues(c.name, result).Inc()
	return sb, err
}

// matrixRecorder puts what a Matrix connector refuses itself (forged
// senders, replayed or undecryptable ciphertext) in the audit log as
// message denials; an error means the record is not durable.
type matrixRecorder struct {
	connector string
	log       *audit.Emitter
}

func (m matrixRecorder) RecordMatrix(ctx context.Context, r matrix.Record) error {
	if m.log == nil {
		return errors.New("no audit log")
	}
	d := map[string]string{"chat_id": r.ChatID, "event_id": r.EventID}
	for k, v := range r.Detail {
		d[k] = v
	}
	_, err := m.log.Append(ctx, audit.Record{Kind: audit.KindMessage, Decision: "deny", Connector: m.connector,
		User: r.Identity, Reasons: []string{r.Reason}, Detail: d})
	return err
}

// PrepareWorkspace forwards to the runtime's (the disk quota applied
// before the session's socket opens the workspace).
func (c countingRuntime) PrepareWorkspace(ctx context.Context, ws string, p engine.SessionProfile) error {
	if w, ok := c.next.(sessions.WorkspacePreparer); ok {
		return w.PrepareWorkspace(ctx, ws, p)
	}
	return nil
}
