// Package load holds the load ladder (issue 17): a real gateway on a
// private containerd (runc), the local connector, no model (the agent's
// tools-only commands), and for each N of the ladder N users at once, each
// sending one /write and five /cat. It reports, per N, turns per second,
// first-turn and later-turn p50/p95, failed turns by cause and the host
// memory each idle sandbox holds.
//
// It takes minutes, so it is a benchmark that skips unless -ladder (or
// LADDER) names the rungs; `go test ./...` never runs it:
//
//	make bench-load                      # N = 50, 100, 200
//	make bench-load LADDER=50 WARM_POOL=4 WARM_POOL_MAX=16
//	make bench-load LADDER=50 RAMP=10s      # arrivals spread over 10 s
//	go test -tags goolm -run '^$' -bench LoadLadder -benchtime 1x ./test/load -ladder 50
//
// It needs root, containerd and runc (test/deps/00-base.sh); without them
// it skips, under CI=true it fails. The results are a table on stdout and
// benchmark metrics benchstat reads.
package load
