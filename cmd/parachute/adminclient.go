package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/parachute-gateway/parachute/gateway"
)

// adminClient talks to a running gateway's operator API on its admin
// socket (<state_dir>/admin.sock), so that the gateway stays the one writer
// of its stores and of its audit log.
type adminClient struct {
	hc   *http.Client
	sock string
}

// errNoGateway: no gateway answers on the admin socket (none is running
// with this state dir). Commands that can then fall back to the store do.
var errNoGateway = errors.New("no gateway is running")

// dialAdmin returns a client of the gateway serving o's state dir, or
// errNoGateway when none answers. Any other failure (a socket the caller
// may not open, a peer refused) is an error: a command never goes around
// a gateway that is running.
func dialAdmin(ctx context.Context, o *opConfig) (*adminClient, error) {
	sock := gateway.AdminSocketPath(o.Cfg.StateDir)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return nil, errNoGateway
		}
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("admin socket %s (from %s): %w: the state dir is the gateway's; run this as root (sudo) or as the gateway's user", sock, o.Path, err)
		}
		return nil, fmt.Errorf("admin socket %s (from %s): %w", sock, o.Path, err)
	}
	conn.Close()
	return &adminClient{sock: sock, hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}}, nil
}

// do sends one request and decodes the JSON answer into out; a refusal
// comes back as an error carrying the gateway's reason and message.
func (c *adminClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://parachute"+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("gateway admin socket %s: %w", c.sock, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e gateway.AdminError
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("gateway refused (%s): %s", e.Reason, e.Error)
		}
		return fmt.Errorf("gateway answered %s", resp.Status)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}
