package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"
)

// DefaultSocket is the session socket's path inside the sandbox when
// PARACHUTE_SOCKET is not set.
const DefaultSocket = "/run/parachute/parachute.sock"

// BaseURL is the URL prefix of every request sent over the socket. The
// host name is never resolved: the client below dials the socket whatever
// the URL says.
const BaseURL = "http://parachute"

// SocketPath returns PARACHUTE_SOCKET, or DefaultSocket when unset.
func SocketPath(getenv func(string) string) string {
	if p := getenv("PARACHUTE_SOCKET"); p != "" {
		return p
	}
	return DefaultSocket
}

// NewSocketClient returns an HTTP client whose every connection is to the
// unix socket at socket. It never uses a proxy from the environment and
// never dials the network. No credential is set: the gateway adds the
// model key on its side, and the socket itself is the session's identity.
func NewSocketClient(socket string) *http.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				c, err := dialer.DialContext(ctx, "unix", socket)
				if err != nil {
					return nil, fmt.Errorf("cannot reach the gateway socket %s: %w", socket, err)
				}
				return c, nil
			},
			MaxIdleConns:    4,
			IdleConnTimeout: 30 * time.Second,
		},
		// Redirects would only ever point back at the socket; refusing
		// them keeps every request's path exactly what the code says.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
