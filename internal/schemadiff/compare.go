package schemadiff

import (
	"fmt"
	"slices"
	"strings"
)

// Difference is one way in which a schema differs from the expected one.
type Difference struct {
	// Object names what differs: "table t", "column t.c", "index i on t",
	// "constraint c on t".
	Object string
	// Message says how, in terms of the expected schema.
	Message string
}

func (d Difference) String() string { return d.Object + ": " + d.Message }

// Compare lists how got differs from want, the expected schema: missing and
// unexpected tables, columns, constraints and indexes; column order, type,
// nullability and default; constraint and index definitions. It returns
// nil when they are equal.
func Compare(want, got *Snapshot) []Difference {
	var diffs []Difference
	add := func(object, format string, args ...any) {
		diffs = append(diffs, Difference{Object: object, Message: fmt.Sprintf(format, args...)})
	}
	for _, wt := range want.Tables {
		gt := got.Table(wt.Name)
		if gt == nil {
			add("table "+wt.Name, "missing")
			continue
		}
		compareColumns(wt, *gt, add)
		compareNamed(wt.Constraints, gt.Constraints, func(c Constraint) (string, string) { return c.Name, c.Def },
			func(name string) string { return "constraint " + name + " on " + wt.Name }, add)
		compareNamed(wt.Indexes, gt.Indexes, func(i Index) (string, string) { return i.Name, i.Def },
			func(name string) string { return "index " + name + " on " + wt.Name }, add)
	}
	for _, gt := range got.Tables {
		if want.Table(gt.Name) == nil {
			add("table "+gt.Name, "unexpected: it is not in the expected schema")
		}
	}
	return diffs
}

func compareColumns(want, got Table, add func(object, format string, args ...any)) {
	find := func(cols []Column, name string) *Column {
		if i := slices.IndexFunc(cols, func(c Column) bool { return c.Name == name }); i >= 0 {
			return &cols[i]
		}
		return nil
	}
	var wantOrder, gotOrder []string
	for _, wc := range want.Columns {
		object := "column " + want.Name + "." + wc.Name
		gc := find(got.Columns, wc.Name)
		if gc == nil {
			add(object, "missing (expected %s)", describe(wc))
			continue
		}
		wantOrder = append(wantOrder, wc.Name)
		if gc.Type != wc.Type {
			add(object, "type is %s, expected %s", gc.Type, wc.Type)
		}
		if gc.NotNull != wc.NotNull {
			add(object, "is %s, expected %s", nullability(gc.NotNull), nullability(wc.NotNull))
		}
		if gc.Default != wc.Default {
			add(object, "default is %s, expected %s", orNone(gc.Default), orNone(wc.Default))
		}
	}
	for _, gc := range got.Columns {
		if find(want.Columns, gc.Name) == nil {
			add("column "+want.Name+"."+gc.Name, "unexpected: %s is not in the expected schema", describe(gc))
			continue
		}
		gotOrder = append(gotOrder, gc.Name)
	}
	if !slices.Equal(wantOrder, gotOrder) {
		add("table "+want.Name, "columns are in the order (%s), expected (%s)",
			strings.Join(gotOrder, ", "), strings.Join(wantOrder, ", "))
	}
}

func compareNamed[T any](want, got []T, key func(T) (name, def string), object func(string) string, add func(object, format string, args ...any)) {
	gotDefs := map[string]string{}
	for _, g := range got {
		name, def := key(g)
		gotDefs[name] = def
	}
	wantNames := map[string]bool{}
	for _, w := range want {
		name, def := key(w)
		wantNames[name] = true
		gdef, ok := gotDefs[name]
		switch {
		case !ok:
			add(object(name), "missing (expected %s)", def)
		case gdef != def:
			add(object(name), "is %s, expected %s", gdef, def)
		}
	}
	for _, g := range got {
		if name, def := key(g); !wantNames[name] {
			add(object(name), "unexpected: %s", def)
		}
	}
}

func describe(c Column) string {
	s := c.Type + " " + nullability(c.NotNull)
	if c.Default != "" {
		s += " DEFAULT " + c.Default
	}
	return s
}

func nullability(notNull bool) string {
	if notNull {
		return "NOT NULL"
	}
	return "nullable"
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
