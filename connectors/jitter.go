package connectors

import "math/rand/v2"

func jitter(n int64) int64 { return rand.Int64N(n) }
