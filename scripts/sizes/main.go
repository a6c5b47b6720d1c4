// Command sizes reports how big the types and functions of one Go package are, in lines,
// so that a limit on them can be checked by anyone:
//
//	go run ./scripts/sizes [-types 0] [-funcs 80] [-top 5] [DIR]
//
// Types have no limit by default: code is split by idea, never by size (a long type that
// holds one idea reads better than parts of it spread over several). Functions over about 80
// lines usually hold two ideas.
//
// A type's size is its declaration plus the bodies of all its methods; a function's size is
// its declaration with its body. Test files are left out. It prints the largest of each and
// exits with status 1 when one is over its limit.
package main

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

type size struct {
	name  string
	lines int
}

func main() {
	maxType := flag.Int("types", 0, "largest allowed type, in lines (declaration and methods); 0: no limit")
	maxFunc := flag.Int("funcs", 80, "largest allowed function or method, in lines")
	top := flag.Int("top", 5, "how many of the largest to print")
	flag.Parse()
	dir := "."
	if flag.NArg() > 0 {
		dir = flag.Arg(0)
	}
	types, funcs, err := measure(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sizes:", err)
		os.Exit(2)
	}
	over := report("types", types, *maxType, *top)
	over = report("functions", funcs, *maxFunc, *top) || over
	if over {
		os.Exit(1)
	}
}

// measure parses the non-test Go files of dir.
func measure(dir string) (types, funcs []size, err error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, nil, err
	}
	fset := token.NewFileSet()
	byType := map[string]int{}
	span := func(n ast.Node) int { return fset.Position(n.End()).Line - fset.Position(n.Pos()).Line + 1 }
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return nil, nil, err
		}
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					if ts, ok := spec.(*ast.TypeSpec); ok {
						byType[ts.Name.Name] += span(ts)
					}
				}
			case *ast.FuncDecl:
				name := d.Name.Name
				if recv := receiver(d); recv != "" {
					byType[recv] += span(d)
					name = recv + "." + name
				}
				funcs = append(funcs, size{filepath.Base(path) + ": " + name, span(d)})
			}
		}
	}
	for name, n := range byType {
		types = append(types, size{name, n})
	}
	return types, funcs, nil
}

// receiver names the type a method belongs to ("" for a function).
func receiver(d *ast.FuncDecl) string {
	if d.Recv == nil || len(d.Recv.List) == 0 {
		return ""
	}
	t := d.Recv.List[0].Type
	for {
		switch x := t.(type) {
		case *ast.StarExpr:
			t = x.X
		case *ast.IndexExpr:
			t = x.X
		case *ast.IndexListExpr:
			t = x.X
		case *ast.Ident:
			return x.Name
		default:
			return ""
		}
	}
}

// report prints the largest sizes and says whether the largest is over limit.
func report(what string, sizes []size, limit, top int) bool {
	sort.Slice(sizes, func(i, j int) bool {
		if sizes[i].lines != sizes[j].lines {
			return sizes[i].lines > sizes[j].lines
		}
		return sizes[i].name < sizes[j].name
	})
	if limit > 0 {
		fmt.Printf("largest %s (limit %d lines):\n", what, limit)
	} else {
		fmt.Printf("largest %s (no limit):\n", what)
	}
	for i := 0; i < top && i < len(sizes); i++ {
		fmt.Printf("  %5d  %s\n", sizes[i].lines, sizes[i].name)
	}
	return limit > 0 && len(sizes) > 0 && sizes[0].lines > limit
}
