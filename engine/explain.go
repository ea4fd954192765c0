package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// ExplainTimeout bounds one traced evaluation: tracing is slow, and it is
// only ever run for a person reading the trace.
const ExplainTimeout = 30 * time.Second

// Explain evaluates in exactly as Evaluate does, on the same prepared query
// over the same policy files and data (data.json and the operator's data
// included), with OPA's tracer on, and returns the decision with the trace
// of that very evaluation. The decision cache is not used, nothing is
// spent and nothing is recorded.
func (e *Engine) Explain(ctx context.Context, in Input) (Decision, []*topdown.Event) {
	start := time.Now()
	set := e.cur.Load()
	d := Decision{ID: newID(start), Entry: in.Entry(), Revision: set.revision}
	q, ok := set.queries[d.Entry]
	if !ok {
		policyError(&d, fmt.Errorf("unknown entry point %q", d.Entry))
		return d, nil
	}
	var value ast.Value
	if di, typed := in.(docInput); typed {
		value = buildValue(di)
	} else {
		value = in.Value()
	}
	ctx, cancel := context.WithTimeout(ctx, ExplainTimeout)
	defer cancel()
	buf := topdown.NewBufferTracer()
	rs, err := q.Eval(ctx, rego.EvalParsedInput(value), rego.EvalQueryTracer(buf), rego.EvalGenerateJSON(asTerm))
	d.Latency = time.Since(start)
	var res *result
	switch {
	case err != nil:
	case len(rs) == 0 || len(rs[0].Expressions) == 0:
		err = fmt.Errorf("data.parachute.%s.decision is undefined for this input", d.Entry)
	case len(rs) > 1:
		err = fmt.Errorf("data.parachute.%s.decision has %d results", d.Entry, len(rs))
	default:
		t, _ := rs[0].Expressions[0].Value.(*ast.Term)
		if t == nil {
			err = fmt.Errorf("data.parachute.%s.decision: no value", d.Entry)
		} else {
			res, err = readResult(d.Entry, t.Value)
		}
	}
	if err != nil {
		policyError(&d, err)
		return d, *buf
	}
	res.apply(&d)
	return d, *buf
}
