package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klozd/api/internal/database"
)

// durabilityResult is what "dbctl check-durability --json" prints.
type durabilityResult struct {
	database.Durability
	OK    bool     `json:"ok"`
	Risks []string `json:"risks"`
}

func runCheckDurability(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const name = "dbctl check-durability"
	fs := newFlags(name,
		"Reports whether the server keeps the commits it acknowledges when it, or its machine, is lost:\n"+
			"whether it is the primary, its streaming standbys and whether the primary waits for them\n"+
			"(synchronous_standby_names, and synchronous_commit of the URL's role and database), fsync and\n"+
			"full_page_writes. With asynchronous standbys a failover loses the acknowledged commits the\n"+
			"standby had not received: idempotency records (whose handlers run again) and lockout failures.\n"+
			"A lone primary passes: there is no failover; --require-standby fails it, as it loses\n"+
			"everything since its last backup when its disk dies. Use the services' URL. Exit 0 the check\n"+
			"holds, 1 it does not, 2 bad usage or an unreachable database.",
		"dbctl check-durability --url 'postgres://app@/klozd?host=db1,db2&target_session_attrs=read-write'", stderr)
	dbURL := urlFlag(fs)
	requireStandby := fs.Bool("require-standby", false, "fail when the server has no streaming standby")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if code, ok := parse(fs, args, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageErr(stderr, name, fmt.Errorf("unexpected argument %q (see %s -h)", fs.Arg(0), name))
	}
	db, err := connect(ctx, *dbURL)
	if err != nil {
		return usageErr(stderr, name, err)
	}
	defer db.Close()
	d, err := database.CheckDurability(ctx, db)
	if err != nil {
		return failErr(stderr, name, err)
	}
	res := durabilityResult{Durability: d, Risks: []string{}}
	var de *database.DurabilityError
	if err := d.Err(); errors.As(err, &de) {
		for _, r := range de.Risks {
			res.Risks = append(res.Risks, r.Error())
		}
	} else if err != nil {
		res.Risks = append(res.Risks, err.Error())
	}
	if *requireStandby && len(d.Standbys) == 0 {
		res.Risks = append(res.Risks, "no streaming standby (--require-standby): losing the server's disk loses everything since the last backup")
	}
	res.OK = len(res.Risks) == 0
	if *asJSON {
		writeJSON(stdout, res)
	} else {
		printDurability(stdout, res)
	}
	if !res.OK {
		return exitFail
	}
	return exitOK
}

func printDurability(w io.Writer, r durabilityResult) {
	role := "primary"
	if !r.Primary {
		role = "standby (in recovery)"
	}
	fmt.Fprintf(w, "server: %s; synchronous_commit=%s; synchronous_standby_names=%q; fsync=%t; full_page_writes=%t\n",
		role, r.SynchronousCommit, r.SynchronousStandbyNames, r.Fsync, r.FullPageWrites)
	if len(r.Standbys) == 0 {
		fmt.Fprintln(w, "standbys: none (a lone server: no failover, but losing its disk loses everything since the last backup)")
	}
	for _, s := range r.Standbys {
		fmt.Fprintf(w, "standby %s: %s, %s\n", s.Name, orUnknown(s.State), orUnknown(s.SyncState))
	}
	if r.OK {
		if r.Synchronous() > 0 {
			fmt.Fprintln(w, "ok: acknowledged commits survive a failover to a synchronous standby")
		} else {
			fmt.Fprintln(w, "ok: acknowledged commits survive a crash of the server")
		}
		return
	}
	fmt.Fprintf(w, "NOT DURABLE: acknowledged commits can be lost:\n  - %s\n", strings.Join(r.Risks, "\n  - "))
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown (needs pg_monitor)"
	}
	return s
}
