// Package agent is Parachute's reference agent: the program the gateway
// runs inside a session's sandbox, once per chat turn.
//
// The sandbox has no network interface. The agent's only way out is the
// session's unix socket, on which the gateway serves MCP tools (/mcp) and
// the model APIs (/v1/chat/completions, /v1/messages). The agent holds no
// credential and sends none; the gateway decides every tool call and model
// call by policy and injects the model key itself. So this package is not a
// security boundary: a compromised or prompt-injected agent can ask for
// anything, and the gateway still decides.
//
// Contract (see docs/agent.md): one JSON Request on stdin; the reply text on
// stdout and exit 0; or one line on stderr and exit 1; or, when the gateway
// answered a tool listing or call as busy, one line on stderr and exit
// ExitBusy (75). When the gateway
// sets PARACHUTE_PROGRESS=1, the agent may first write progress lines
// ({"type":"progress","text":…}, one JSON object a line) on stdout, which
// the chat shows while the turn runs; the reply follows them.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// MaxStepsLimit is the largest PARACHUTE_MAX_STEPS accepted.
const MaxStepsLimit = 64

// Config is what the agent takes from its environment.
type Config struct {
	Socket   string
	MaxSteps int
	// Progress, if not nil, is given text of the reply as it is written
	// (the model's words before its tool calls), each piece to be appended
	// to the ones before.
	Progress func(text string)
}

// ProgressEnv is set to "1" by the gateway when it shows progress lines.
const ProgressEnv = "PARACHUTE_PROGRESS"

// ProgressLine is one progress line of the agent contract.
func ProgressLine(text string) []byte {
	b, _ := json.Marshal(struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}{"progress", strings.ToValidUTF8(text, "\uFFFD")})
	return append(b, '\n')
}

// ConfigFromEnv reads PARACHUTE_SOCKET and PARACHUTE_MAX_STEPS.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{Socket: SocketPath(getenv), MaxSteps: DefaultMaxSteps}
	if s := getenv("PARACHUTE_MAX_STEPS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxStepsLimit {
			return c, fmt.Errorf("PARACHUTE_MAX_STEPS=%q is not a number from 1 to %d", s, MaxStepsLimit)
		}
		c.MaxSteps = n
	}
	return c, nil
}

// Run is one turn: it reads the request from stdin, writes the reply to
// stdout and returns the process exit code (0 ok, 1 failed with one line on
// stderr). getenv is os.Getenv in production.
func Run(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	var progress func(string)
	if getenv(ProgressEnv) == "1" {
		progress = func(text string) { _, _ = stdout.Write(ProgressLine(text)) }
	}
	reply, err := turn(ctx, stdin, getenv, progress)
	var be *BusyError
	if errors.As(err, &be) {
		fmt.Fprintln(stderr, "agent: "+oneLine(err.Error(), 1000))
		return ExitBusy
	}
	if err != nil {
		fmt.Fprintln(stderr, "agent: "+oneLine(err.Error(), 1000))
		return 1
	}
	if _, err := io.WriteString(stdout, reply); err != nil {
		fmt.Fprintln(stderr, "agent: writing the reply: "+oneLine(err.Error(), 200))
		return 1
	}
	return 0
}

func turn(ctx context.Context, stdin io.Reader, getenv func(string) string, progress func(string)) (string, error) {
	cfg, err := ConfigFromEnv(getenv)
	if err != nil {
		return "", err
	}
	cfg.Progress = progress
	req, err := DecodeRequest(stdin)
	if err != nil {
		return "", err
	}
	reply, err := Answer(ctx, cfg, req)
	if err != nil {
		return "", err
	}
	reply = strings.ToValidUTF8(reply, "\uFFFD")
	if strings.TrimSpace(reply) == "" {
		return "", errors.New("the model returned an empty reply")
	}
	return reply, nil
}

// Answer produces the reply to one checked request.
func Answer(ctx context.Context, cfg Config, req *Request) (string, error) {
	client := NewSocketClient(cfg.Socket)
	defer client.CloseIdleConnections()
	if req.Model.Provider == ProviderNone {
		return toolsOnly(ctx, client, req)
	}
	tools, err := ConnectTools(ctx, client)
	if err != nil {
		return "", err
	}
	defer tools.Close()
	list, err := tools.List(ctx)
	if err != nil {
		return "", err
	}
	var conv conversation
	switch req.Model.Provider {
	case ProviderOpenAI:
		conv = newOpenAI(client, req, list)
	case ProviderAnthropic:
		conv = newAnthropic(client, req, list)
	default:
		return "", fmt.Errorf("unknown model provider %q", req.Model.Provider)
	}
	return loop(ctx, conv, tools, cfg.MaxSteps, cfg.Progress)
}
