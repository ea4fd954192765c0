package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const modulePath = "github.com/parachute-gateway/parachute"

// The one file of product code that may call (*Log).Append.
const emitterFile = "audit/emitter.go"

// Every record product code writes goes through the Emitter, which checks
// its kind and counts it: no product code (test files aside) outside
// audit/emitter.go calls (*audit.Log).Append or takes it as a method value,
// and none hands a *audit.Log to something that appends through an
// interface (an Append method), as sessions.Options.Audit once was. The
// module's packages are type-checked from source against the export data
// `go list -export` builds.
func TestOnlyTheEmitterAppends(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: builds the module's export data")
	}
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(self))
	pkgs := listPackages(t, root)
	exports := map[string]string{}
	for _, p := range pkgs {
		exports[p.ImportPath] = p.Export
	}
	fset := token.NewFileSet()
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		if f := exports[path]; f != "" {
			return os.Open(f)
		}
		return nil, fmt.Errorf("no export data for %s", path)
	})
	var found []string
	checked := 0
	for _, p := range pkgs {
		if p.ImportPath != modulePath && !strings.HasPrefix(p.ImportPath, modulePath+"/") || len(p.GoFiles) == 0 {
			continue
		}
		var files []*ast.File
		for _, name := range p.GoFiles {
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
		info := &types.Info{
			Types:      map[ast.Expr]types.TypeAndValue{},
			Selections: map[*ast.SelectorExpr]*types.Selection{},
		}
		conf := types.Config{Importer: imp}
		if _, err := conf.Check(p.ImportPath, fset, files, info); err != nil {
			t.Fatalf("type-checking %s: %v", p.ImportPath, err)
		}
		checked++
		for _, f := range files {
			rel, _ := filepath.Rel(root, fset.File(f.Pos()).Name())
			if filepath.ToSlash(rel) == emitterFile {
				continue
			}
			for _, v := range appendBypasses(fset, f, info) {
				found = append(found, filepath.ToSlash(rel)+":"+v)
			}
		}
	}
	if checked < 10 {
		t.Fatalf("only %d packages of the module were checked", checked)
	}
	if len(found) > 0 {
		t.Fatalf("product code writes records around audit.Emitter (use the gateway's emitter, which checks the kind and counts the record):\n  %s",
			strings.Join(found, "\n  "))
	}
}

type listedPackage struct {
	ImportPath, Dir, Export string
	GoFiles                 []string
}

func listPackages(t *testing.T, root string) []listedPackage {
	t.Helper()
	goTool := "go" // the toolchain that runs this test, if it can be found
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		goTool = p
	}
	cmd := exec.Command(goTool, "list", "-tags", "goolm", "-export", "-deps", "-json=ImportPath,Dir,Export,GoFiles", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// appendBypasses finds in f every use of (*audit.Log).Append and every
// *audit.Log passed, assigned or set as a field where an interface with an
// Append method is expected.
func appendBypasses(fset *token.FileSet, f *ast.File, info *types.Info) []string {
	var out []string
	at := func(n ast.Node, what string) {
		out = append(out, fmt.Sprintf("%d: %s", fset.Position(n.Pos()).Line, what))
	}
	handed := func(e ast.Expr, to types.Type) {
		if to != nil && isLog(info.TypeOf(e)) && appendsThrough(to) {
			at(e, fmt.Sprintf("a *audit.Log handed to %s, which appends through its Append method", to))
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.SelectorExpr:
			if s := info.Selections[n]; s != nil && isLogAppend(s.Obj()) {
				at(n, "calls (*audit.Log).Append")
			}
		case *ast.CallExpr:
			sig, ok := info.TypeOf(n.Fun).Underlying().(*types.Signature)
			if !ok || info.Types[n.Fun].IsType() {
				return true
			}
			for i, arg := range n.Args {
				var to types.Type
				switch {
				case sig.Variadic() && i >= sig.Params().Len()-1:
					if sl, ok := sig.Params().At(sig.Params().Len() - 1).Type().(*types.Slice); ok && !n.Ellipsis.IsValid() {
						to = sl.Elem()
					}
				case i < sig.Params().Len():
					to = sig.Params().At(i).Type()
				}
				handed(arg, to)
			}
		case *ast.CompositeLit:
			st, ok := derefStruct(info.TypeOf(n))
			if !ok {
				return true
			}
			for i, el := range n.Elts {
				if kv, ok := el.(*ast.KeyValueExpr); ok {
					if id, ok := kv.Key.(*ast.Ident); ok {
						for j := range st.NumFields() {
							if st.Field(j).Name() == id.Name {
								handed(kv.Value, st.Field(j).Type())
							}
						}
					}
				} else if i < st.NumFields() {
					handed(el, st.Field(i).Type())
				}
			}
		case *ast.AssignStmt:
			if len(n.Lhs) == len(n.Rhs) && n.Tok == token.ASSIGN {
				for i := range n.Lhs {
					handed(n.Rhs[i], info.TypeOf(n.Lhs[i]))
				}
			}
		}
		return true
	})
	return out
}

func derefStruct(t types.Type) (*types.Struct, bool) {
	if t == nil {
		return nil, false
	}
	if p, ok := t.Underlying().(*types.Pointer); ok {
		t = p.Elem()
	}
	st, ok := t.Underlying().(*types.Struct)
	return st, ok
}

func isLog(t types.Type) bool {
	p, ok := t.(*types.Pointer)
	if !ok {
		return false
	}
	n, ok := p.Elem().(*types.Named)
	return ok && n.Obj().Name() == "Log" && n.Obj().Pkg() != nil && n.Obj().Pkg().Path() == modulePath+"/audit"
}

func isLogAppend(obj types.Object) bool {
	fn, ok := obj.(*types.Func)
	if !ok || fn.Name() != "Append" {
		return false
	}
	recv := fn.Type().(*types.Signature).Recv()
	return recv != nil && isLog(recv.Type())
}

func appendsThrough(t types.Type) bool {
	it, ok := t.Underlying().(*types.Interface)
	if !ok {
		return false
	}
	return slices.ContainsFunc(slices.Collect(it.Methods()), func(m *types.Func) bool { return m.Name() == "Append" })
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
