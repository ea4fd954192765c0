package connectors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/parachute-gateway/parachute/internal/backoff"
)

// RunAll runs every connector until ctx ends, each on its own: one that
// fails does not stop the others. A connector whose Run returns an error
// wrapping ErrUnauthorized (its credentials were refused) is not started
// again; one that returns any other error or panics is restarted after a
// backoff. RunAll returns when ctx ends and every connector has returned,
// with the errors of the connectors that gave up, joined.
func RunAll(ctx context.Context, h Handler, log zerolog.Logger, conns ...Connector) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := supervise(ctx, h, log.With().Str("connector", c.Name()).Logger(), c); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func supervise(ctx context.Context, h Handler, log zerolog.Logger, c Connector) error {
	b := backoff.Backoff{Min: time.Second, Max: 5 * time.Minute}
	for ctx.Err() == nil {
		start := time.Now()
		err := runOnce(ctx, h, c)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrUnauthorized) {
			log.Error().Str("error", err.Error()).Msg("connector stopped: credentials refused; the other connectors keep running")
			return fmt.Errorf("connector %s: %w", c.Name(), err)
		}
		if time.Since(start) > 10*time.Minute {
			b.Reset() // it ran fine for a while
		}
		wait := b.Next()
		if err == nil {
			err = errors.New("returned before shutdown")
		}
		log.Warn().Str("error", err.Error()).Dur("retry_in", wait).Msg("connector failed; restarting")
		if !backoff.Sleep(ctx, wait) {
			return nil
		}
	}
	return nil
}

// runOnce runs c, turning a panic into an error.
func runOnce(ctx context.Context, h Handler, c Connector) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("connector %s panicked: %v", c.Name(), p)
		}
	}()
	return c.Run(ctx, h)
}
