package discord

import (
	"fmt"
	"net/url"
	"strings"
	"sync"

	"github.com/bwmarrin/discordgo"
	"github.com/rs/zerolog"

	"github.com/parachute-gateway/parachute/connectors"
)

var endpointMu sync.Mutex

// SetAPIBase points discordgo's REST endpoints (and so the gateway URL it
// asks for) at base, e.g. "http://127.0.0.1:4000/api/v9/". discordgo keeps
// them in package variables, so this is process-wide; it is meant for tests
// against a fake.
func SetAPIBase(base string) error {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("discord: API base %q is not an http(s) URL", base)
	}
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	endpointMu.Lock()
	defer endpointMu.Unlock()
	discordgo.EndpointAPI = base
	discordgo.EndpointGuilds = base + "guilds/"
	discordgo.EndpointChannels = base + "channels/"
	discordgo.EndpointUsers = base + "users/"
	discordgo.EndpointGateway = base + "gateway"
	discordgo.EndpointGatewayBot = base + "gateway/bot"
	discordgo.EndpointWebhooks = base + "webhooks/"
	return nil
}

// discordgo logs through one package-level function. Route it to the most
// recently created connector's logger, redacting every token seen.
var libLog struct {
	sync.Mutex
	log     zerolog.Logger
	secrets []string
	red     *connectors.Redactor
}

func routeLibraryLogs(log zerolog.Logger, token string) {
	libLog.Lock()
	defer libLog.Unlock()
	libLog.log = log
	libLog.secrets = append(libLog.secrets, token)
	libLog.red = connectors.NewRedactor(libLog.secrets...)
	discordgo.Logger = func(level, _ int, format string, a ...any) {
		libLog.Lock()
		l, r := libLog.log, libLog.red
		libLog.Unlock()
		ev := l.Debug()
		switch level {
		case discordgo.LogError:
			ev = l.Error()
		case discordgo.LogWarning:
			ev = l.Warn()
		}
		ev.Str("source", "discordgo").Msg(r.String(fmt.Sprintf(format, a...)))
	}
}
