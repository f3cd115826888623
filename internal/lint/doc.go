// Package lint holds no code of its own: its tests enforce the repository's
// conventions from STYLE.md so that they fail in `make test` instead of in a
// review. layering_test.go loads every package of the module with `go list`
// and checks each import against a table of (package pattern -> allowed
// imports) rules; it also rejects util/common/helpers packages, handwritten
// code under api/, and os.Exit or log.Fatal outside cmd/.
//
// A new package that matches no rule fails the test until a rule is added to
// the table in layering_test.go. The package imports stdlib only and must
// not be imported by anything.
package lint
