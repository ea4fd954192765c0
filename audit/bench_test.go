package audit

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// countingFile counts the fsyncs of the current file.
type countingFile struct {
	file
	n *atomic.Int64
}

func (c countingFile) Sync() error {
	c.n.Add(1)
	return c.file.Sync()
}

// benchRecord is about the size of a tool decision's record.
func benchRecord() Record {
	return Record{Kind: "tool", Decision: "allow", DecisionID: "0193a8b2-7c1d-7e2f-9a3b-4c5d6e7f8091",
		Connector: "tg", User: "telegram:1", SessionID: "sess-1", TurnID: "turn-1", TrustLevel: "sandboxed",
		Workspace: "users/telegram%3A1", Tool: "read_file", Path: "users/telegram%3A1/notes.md",
		PolicyRevision: "3f2a9c1b7e4d", LatencyUS: 41,
		Input: []byte(`{"paths":[{"access":"read","arg":"path","raw":"/workspace/notes.md","resolved":"users/telegram%3A1/notes.md"}],"session":{"connector":"tg","connector_type":"telegram","id":"sess-1","identity":"telegram:1","read_only":false,"role":"owner","trust_level":"sandboxed","workspace":"users/telegram%3A1"},"tool":{"access":"read","name":"read_file","server":"builtin"}}`)}
}

// BenchmarkAppend measures durable appends (the real fsync, on this
// machine's disk) from 1 and 8 writers at once, and how many records one
// fsync covers.
func BenchmarkAppend(b *testing.B) {
	for _, writers := range []int{1, 8} {
		b.Run(map[int]string{1: "writers=1", 8: "writers=8"}[writers], func(b *testing.B) {
			var syncs atomic.Int64
			l, err := Open(filepath.Join(b.TempDir(), "audit"), Options{CheckpointInterval: -1,
				openFile: func(name string) (file, error) {
					f, err := openOSFile(name)
					return countingFile{f, &syncs}, err
				}})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			var left atomic.Int64
			left.Store(int64(b.N))
			syncs.Store(0)
			b.ResetTimer()
			var wg sync.WaitGroup
			for range writers {
				wg.Go(func() {
					for left.Add(-1) >= 0 {
						if _, err := l.Append(context.Background(), benchRecord()); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(b.N)/float64(syncs.Load()), "records/fsync")
		})
	}
}
