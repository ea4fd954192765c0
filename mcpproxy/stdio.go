package mcpproxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// ServeStdio serves the session over newline-delimited JSON-RPC on r and w
// (a stdio MCP client such as Claude Desktop) until r ends or ctx is done.
// Every line passes the same intake checks as the HTTP endpoint; a refused
// line is answered with a JSON-RPC error and the connection stays up.
func (s *Session) ServeStdio(ctx context.Context, r io.Reader, w io.Writer) error {
	conn := newLineConn(r, w, s.p.opts.MaxMessageBytes, s.rejected)
	err := s.server.Run(ctx, lineTransport{conn})
	if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

type lineTransport struct{ c *lineConn }

func (t lineTransport) Connect(context.Context) (mcp.Connection, error) { return t.c, nil }

// lineConn is an mcp.Connection over newline-delimited JSON with the intake
// checks in front.
type lineConn struct {
	in   *bufio.Reader
	max  int64
	wmu  sync.Mutex
	out  io.Writer
	msgs chan jsonrpc.Message
	err  error // set before msgs is closed
	done chan struct{}
	once sync.Once

	// pending counts requests read and not yet answered: at the end of
	// input, Read waits for them so that the last answers are written.
	onReject RejectFunc // told of every refused message

	pmu     sync.Mutex
	pending int
	idle    chan struct{} // closed and replaced when pending drops to 0
}

func newLineConn(r io.Reader, w io.Writer, max int64, onReject RejectFunc) *lineConn {
	if onReject == nil {
		onReject = func(*RPCError) {}
	}
	c := &lineConn{in: bufio.NewReaderSize(r, 64<<10), max: max, out: w, onReject: onReject,
		msgs: make(chan jsonrpc.Message), done: make(chan struct{}), idle: make(chan struct{})}
	go c.readLoop()
	return c
}

func (c *lineConn) readLoop() {
	defer close(c.msgs)
	for {
		line, err := readLine(c.in, c.max)
		if errors.Is(err, errLineTooLong) {
			c.reject(&RPCError{Code: CodeInvalidRequest, Message: "message larger than the limit"})
			continue
		}
		if len(line) > 0 {
			if rerr := CheckMessage(line, c.max); rerr != nil {
				c.reject(rerr)
			} else if msg, derr := jsonrpc.DecodeMessage(line); derr != nil {
				c.reject(&RPCError{Code: CodeParseError, Message: "malformed JSON-RPC message: " + derr.Error()})
			} else {
				select {
				case c.msgs <- msg:
				case <-c.done:
					c.err = io.EOF
					return
				}
			}
		}
		if err != nil {
			c.err = err
			return
		}
	}
}

var errLineTooLong = errors.New("line too long")

// readLine reads one line without its newline, at most max bytes; a longer
// line is consumed to its end and reported as errLineTooLong.
func readLine(r *bufio.Reader, max int64) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if int64(len(line)+len(chunk)) > max+1 {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			return nil, errLineTooLong
		}
		line = append(line, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if n := len(line); n > 0 && line[n-1] == '\n' {
			line = line[:n-1]
		}
		return line, err
	}
}

func (c *lineConn) Read(ctx context.Context) (jsonrpc.Message, error) {
	select {
	case msg, ok := <-c.msgs:
		if !ok {
			c.drain(ctx)
			if c.err == nil {
				return nil, io.EOF
			}
			return nil, c.err
		}
		if req, isReq := msg.(*jsonrpc.Request); isReq && req.IsCall() {
			c.pmu.Lock()
			c.pending++
			c.pmu.Unlock()
		}
		return msg, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.done:
		return nil, io.EOF
	}
}

// drain waits until every request read has been answered.
func (c *lineConn) drain(ctx context.Context) {
	for {
		c.pmu.Lock()
		n, idle := c.pending, c.idle
		c.pmu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return
		case <-c.done:
			return
		}
	}
}

func (c *lineConn) Write(_ context.Context, msg jsonrpc.Message) error {
	b, err := jsonrpc.EncodeMessage(msg)
	if err != nil {
		return err
	}
	err = c.writeLine(b)
	if _, isResp := msg.(*jsonrpc.Response); isResp {
		c.pmu.Lock()
		if c.pending > 0 {
			c.pending--
			if c.pending == 0 {
				close(c.idle)
				c.idle = make(chan struct{})
			}
		}
		c.pmu.Unlock()
	}
	return err
}

// reject tells onReject of a refused message and answers it.
func (c *lineConn) reject(e *RPCError) {
	c.onReject(e)
	c.writeRaw(e)
}

func (c *lineConn) writeRaw(e *RPCError) {
	b, err := e.MarshalJSON()
	if err == nil {
		_ = c.writeLine(b)
	}
}

func (c *lineConn) writeLine(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.out.Write(append(b, '\n'))
	return err
}

func (c *lineConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return nil
}

func (c *lineConn) SessionID() string { return "" }
