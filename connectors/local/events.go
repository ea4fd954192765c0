package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parachute-gateway/parachute/connectors"
)

// EditInterval is the least time between two edit events of a streamed
// reply.
const EditInterval = 100 * time.Millisecond

// Event is the data of one server-sent event of a streamed reply
// ("Accept: text/event-stream"). Events, in order:
//
//	event: typing   data: {}                       the agent is working
//	event: message  data: {"id":"1","text":"…"}    a new message (the
//	                                               "thinking…" placeholder,
//	                                               or a further chunk)
//	event: edit     data: {"id":"1","text":"…"}    message id now reads text
//	event: done     data: Response                 the final reply, as the
//	                                               JSON answer would be
//	event: error    data: {"error":"…"}            the message failed
type Event struct {
	ID   string `json:"id"`
	Text string `json:"text"`
}

// wantsEvents: the client asked for server-sent events.
func wantsEvents(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "text/event-stream" {
			return true
		}
	}
	return false
}

func (c *Connector) serveEvents(w http.ResponseWriter, r *http.Request, h connectors.Handler, m *connectors.Message) {
	ev := &eventReplier{w: w, flush: http.NewResponseController(w)}
	err := h.Handle(r.Context(), m, ev)
	ev.mu.Lock()
	defer ev.mu.Unlock()
	switch {
	case err != nil && errors.Is(err, connectors.ErrMalformed) && !ev.started:
		httpError(w, http.StatusBadRequest, err.Error())
	case err != nil && len(ev.order) == 0:
		if !ev.started {
			httpError(w, http.StatusInternalServerError, "the message could not be handled")
			return
		}
		ev.event("error", map[string]string{"error": "the message could not be handled"})
	default:
		resp := Response{Chunks: []string{}}
		for i, id := range ev.order {
			if i > 0 {
				resp.Reply += "\n\n"
			}
			resp.Reply += ev.texts[id]
			resp.Chunks = append(resp.Chunks, ev.texts[id])
		}
		ev.event("done", resp)
	}
}

// eventReplier is the connectors.Streamer of one event-stream request.
type eventReplier struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	flush   *http.ResponseController
	started bool
	order   []string          // message IDs in the order sent
	texts   map[string]string // message ID → current text
	busy    time.Duration     // set by Busy before the first event: status 503
}

// Busy marks the reply as a busy one (connectors.BusyReplier): if no event
// has been sent yet, the stream's status is 503 with Retry-After.
func (e *eventReplier) Busy(retryAfter time.Duration) {
	e.mu.Lock()
	e.busy = max(retryAfter, time.Nanosecond)
	e.mu.Unlock()
}

// event writes one event; the caller holds mu.
func (e *eventReplier) event(name string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	if !e.started {
		e.started = true
		e.w.Header().Set("Content-Type", "text/event-stream")
		e.w.Header().Set("Cache-Control", "no-store")
		if e.busy > 0 {
			e.w.Header().Set("Retry-After", retryAfter(e.busy))
			e.w.WriteHeader(http.StatusServiceUnavailable)
		} else {
			e.w.WriteHeader(http.StatusOK)
		}
	}
	// JSON has no raw newline, so one data line carries it whole.
	if _, err := fmt.Fprintf(e.w, "event: %s\ndata: %s\n\n", name, b); err != nil {
		return err
	}
	return e.flush.Flush()
}

func (e *eventReplier) SendText(ctx context.Context, chatID, text string) error {
	_, err := e.SendPlaceholder(ctx, chatID, text)
	return err
}

func (e *eventReplier) SendPlaceholder(_ context.Context, _, text string) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	id := strconv.Itoa(len(e.order) + 1)
	if e.texts == nil {
		e.texts = map[string]string{}
	}
	e.order = append(e.order, id)
	e.texts[id] = text
	return id, e.event("message", Event{ID: id, Text: text})
}

func (e *eventReplier) EditText(_ context.Context, _, id, text string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.texts[id]; !ok {
		return fmt.Errorf("local: no message %q to edit", id)
	}
	e.texts[id] = text
	return e.event("edit", Event{ID: id, Text: text})
}

func (e *eventReplier) Typing(context.Context, string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.event("typing", struct{}{})
}

func (e *eventReplier) EditInterval() time.Duration { return EditInterval }
