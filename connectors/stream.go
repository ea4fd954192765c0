package connectors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Placeholder is the text a streamed reply starts as, before the agent
// has written anything.
const Placeholder = "thinking…"

// TypingInterval is how often a typing indicator is renewed while a turn
// runs (Telegram's lasts 5 s, Discord's 10 s).
const TypingInterval = 4 * time.Second

// Streamer is a Replier that can edit the messages it sent, so a reply is
// shown while the agent writes it: a Placeholder first, edited as the
// agent's progress arrives, and a final edit with the full reply. A
// connector without edits implements only Replier and its replies arrive
// as one final message.
type Streamer interface {
	Replier
	// SendPlaceholder sends text and returns the platform ID of the
	// message it sent, for EditText.
	SendPlaceholder(ctx context.Context, chatID, text string) (messageID string, err error)
	// EditText replaces the text of a message the bot sent, already
	// within the platform limit.
	EditText(ctx context.Context, chatID, messageID, text string) error
	// EditInterval is the least time between two edits in one chat that
	// the platform allows (Telegram about 1 s, Discord 1 s: 5 per 5 s).
	EditInterval() time.Duration
}

// stream shows one reply while the turn runs: it renews the typing
// indicator, and edits the placeholder to the latest progress at most once
// per EditInterval, dropping intermediate texts (the latest wins).
type stream struct {
	s       Streamer
	chatID  string
	limit   int
	unit    Unit
	started bool   // the placeholder was tried
	msgID   string // "" when no placeholder was sent
	last    time.Time
	shown   string
	mu      sync.Mutex
	pending string
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

// startStream starts the editor. The placeholder is sent when the agent
// first reports progress, so a turn without progress (an agent that does
// not stream) is answered as one final message, as before. It never fails:
// without a placeholder, the reply is sent as new messages at the end.
func startStream(ctx context.Context, s Streamer, chatID string, limit int, unit Unit) *stream {
	st := &stream{s: s, chatID: chatID, limit: limit, unit: unit,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go st.run(ctx)
	return st
}

// Progress records the reply so far; it never blocks the turn.
func (st *stream) Progress(text string) {
	st.mu.Lock()
	st.pending = text
	st.mu.Unlock()
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

func (st *stream) run(ctx context.Context) {
	defer close(st.done)
	typing := time.NewTicker(TypingInterval)
	defer typing.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-st.stop:
			return
		case <-typing.C:
			_ = st.s.Typing(ctx, st.chatID) // best effort
		case <-st.wake:
			if !st.started {
				st.started = true
				id, err := st.s.SendPlaceholder(ctx, st.chatID, Placeholder)
				if err != nil {
					continue // the reply goes out as new messages at the end
				}
				st.msgID, st.shown, st.last = id, Placeholder, time.Now()
			}
			if st.msgID == "" {
				continue
			}
			if !st.waitTurn(ctx, typing.C) {
				return
			}
			st.mu.Lock()
			text := st.pending
			st.mu.Unlock()
			st.edit(ctx, preview(text, st.limit, st.unit))
		}
	}
}

// waitTurn waits until an edit is allowed, keeping the typing indicator
// up meanwhile; false if the stream ended.
func (st *stream) waitTurn(ctx context.Context, typing <-chan time.Time) bool {
	wait := time.Until(st.last.Add(st.s.EditInterval()))
	if wait <= 0 {
		return true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return true
		case <-typing:
			_ = st.s.Typing(ctx, st.chatID) // best effort
		case <-ctx.Done():
			return false
		case <-st.stop:
			return false
		}
	}
}

func (st *stream) edit(ctx context.Context, text string) error {
	if text == "" || text == st.shown {
		return nil
	}
	err := st.s.EditText(ctx, st.chatID, st.msgID, text)
	st.last = time.Now()
	if err == nil {
		st.shown = text
	}
	return err
}

// finish stops the editor and shows the full reply: a final edit of the
// placeholder with its first chunk (once the rate limit allows), the rest
// as new messages. If the placeholder is missing or the final edit fails,
// the whole reply is sent as new messages, so the user always gets it.
func (st *stream) finish(ctx context.Context, reply string) error {
	close(st.stop)
	<-st.done
	chunks := Chunk(reply, st.limit, st.unit)
	if len(chunks) == 0 {
		chunks = []string{"(The agent gave no reply.)"}
	}
	rest := chunks
	if st.msgID != "" {
		waitCtx(ctx, time.Until(st.last.Add(st.s.EditInterval())))
		if err := st.edit(ctx, chunks[0]); err == nil {
			rest = chunks[1:]
		}
	}
	for _, c := range rest {
		if err := st.s.SendText(ctx, st.chatID, c); err != nil {
			return fmt.Errorf("connectors: streamed reply: %w", err)
		}
	}
	return nil
}

// preview is what a progress edit shows: the first chunk of the text so
// far, marked as unfinished when more follows.
func preview(text string, limit int, unit Unit) string {
	chunks := Chunk(text, limit-4, unit) // room for " …" in any unit
	switch len(chunks) {
	case 0:
		return ""
	case 1:
		return chunks[0]
	default:
		return chunks[0] + " …"
	}
}

func waitCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// runTurn runs the turn and hands its reply to the connector: streamed
// through a placeholder when the connector can edit, else as one final
// message (in chunks at the platform limit).
func (r *Router) runTurn(ctx context.Context, rep Replier, m *Message, req TurnRequest) error {
	_ = rep.Typing(ctx, m.ChatID) // best effort
	s, ok := rep.(Streamer)
	if !ok {
		reply, err := r.turns.Turn(ctx, req)
		if be := (*BusyTurnError)(nil); errors.As(err, &be) {
			return r.sayBusy(ctx, rep, m, be.RetryAfter)
		}
		if err != nil {
			_ = r.say(ctx, rep, m, TurnFailedReply)
			return fmt.Errorf("connectors: turn for %s: %w", req.Identity, err)
		}
		return r.say(ctx, rep, m, reply)
	}
	limit, unit := PlatformLimit(m.Type)
	st := startStream(ctx, s, m.ChatID, limit, unit)
	req.Progress = st.Progress
	reply, err := r.turns.Turn(ctx, req)
	if be := (*BusyTurnError)(nil); errors.As(err, &be) {
		if b, ok := rep.(BusyReplier); ok {
			b.Busy(be.RetryAfter)
		}
		return st.finish(ctx, BusyReply(be.RetryAfter))
	}
	if err != nil {
		_ = st.finish(ctx, TurnFailedReply)
		return fmt.Errorf("connectors: turn for %s: %w", req.Identity, err)
	}
	if err := st.finish(ctx, reply); err != nil {
		return fmt.Errorf("connectors: reply to %s: %w", m.Identity(), err)
	}
	return nil
}

// TurnFailedReply answers a message whose turn failed.
const TurnFailedReply = "Sorry, the agent could not answer. Please try again."
