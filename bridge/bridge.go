// Package bridge lets programs inside the sandbox that only speak TCP
// proxies (HTTPS_PROXY=http://127.0.0.1:3128) reach the gateway's egress
// proxy, which is served on the session's unix socket.
//
// The bridge listens on loopback only and copies every accepted connection
// byte for byte to a new connection on the socket. It parses nothing and
// decides nothing: the gateway's CONNECT / absolute-URL proxy on the socket
// decides every destination by policy. The bridge only bounds how many
// connections it holds at once.
package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// DefaultListen is the bridge's default address.
const DefaultListen = "127.0.0.1:3128"

// DefaultMaxConns bounds concurrent connections when Options gives none.
const DefaultMaxConns = 64

// Options configure a Bridge.
type Options struct {
	Socket   string // the session socket to forward to
	MaxConns int    // connections held at once; more are closed at once
	Logger   *slog.Logger
}

// Bridge forwards TCP connections to the session socket.
type Bridge struct {
	socket string
	slots  chan struct{}
	log    *slog.Logger
	dialer net.Dialer
}

// New returns a Bridge forwarding to opts.Socket.
func New(opts Options) (*Bridge, error) {
	if opts.Socket == "" {
		return nil, errors.New("bridge: no socket path")
	}
	n := opts.MaxConns
	if n <= 0 {
		n = DefaultMaxConns
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Bridge{socket: opts.Socket, slots: make(chan struct{}, n), log: log, dialer: net.Dialer{Timeout: 10 * time.Second}}, nil
}

// Listen opens a TCP listener on addr, which must be a loopback address:
// the bridge is for processes in the same sandbox, never for a network.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("bridge: listen address %q: %w", addr, err)
	}
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("bridge: listen address %q is not loopback (use 127.0.0.1 or [::1])", addr)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	return ln, nil
}

// Serve accepts connections on ln until ctx is cancelled, then closes ln
// and every open connection and returns nil once all are done. Any other
// accept failure is returned after the same cleanup.
func (b *Bridge) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer ln.Close()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("bridge: accept: %w", err)
		}
		select {
		case b.slots <- struct{}{}:
		default:
			// Full: refuse now rather than queue, so the client fails fast.
			b.log.Warn("bridge: connection limit reached, closing", "limit", cap(b.slots), "remote", conn.RemoteAddr().String())
			conn.Close()
			continue
		}
		wg.Go(func() {
			defer func() { <-b.slots }()
			b.forward(ctx, conn)
		})
	}
}

// forward copies conn to a new socket connection and back until both
// directions end or ctx is cancelled.
func (b *Bridge) forward(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	up, err := b.dialer.DialContext(ctx, "unix", b.socket)
	if err != nil {
		b.log.Warn("bridge: cannot reach the gateway socket", "err", err)
		return
	}
	defer up.Close()
	// Cancellation closes both ends, which unblocks both copies.
	stop := context.AfterFunc(ctx, func() {
		conn.Close()
		up.Close()
	})
	defer stop()
	done := make(chan struct{}, 2)
	go func() { pipe(up, conn); done <- struct{}{} }()
	go func() { pipe(conn, up); done <- struct{}{} }()
	<-done
	<-done
}

// pipe copies src to dst, then half-closes dst so the peer sees EOF while
// the other direction may still be running.
func pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	} else {
		_ = dst.Close()
	}
}
