package lockout

import (
	"fmt"
	"strings"
)

// queries holds the SQL of a [Service], built once from its [Policy]: the
// policy's numbers are written into the text as integer literals, so each
// statement carries only its keys and times as parameters.
//
// Times are parameters (never now()) so that the injected clock rules and
// the session's TimeZone does not matter; they are UTC milliseconds cast to
// timestamp(3).
type queries struct {
	check       string // email, ip, now, cut (prepared)
	checkNullIP string // email, now, cut
	// checkArgs, checkNullArgs and failNullInsArgs are the number of
	// parameters these take: cut is last and unused when the limits they
	// read are off.
	checkArgs, checkNullArgs, failNullInsArgs int
	failure                                   string // id, email, ip, now, cut
	lockEmail                                 string // email: the advisory lock of the NULL-IP path
	failNullUpd                               string // email, now, cut
	failNullIns                               string // id, email, now, cut
	success                                   string // email, ip, now (also unlocks one pair)
	successNull                               string // email, now
	unlockEmail                               string // email, now
	unlockIP                                  string // ip, now
	purge                                     string // cut, batch
	countStale                                string // cut
}

// bind replaces the {name} tokens of q with $1, $2… in the order given.
func bind(q string, names ...string) string {
	q, _ = bindN(q, names...)
	return q
}

// bindN is bind, also returning how many of names q uses: a name may be
// unused only if every name after it is too, so that the caller can pass
// the first n arguments.
func bindN(q string, names ...string) (string, int) {
	n := 0
	for i, name := range names {
		if strings.Contains(q, "{"+name+"}") {
			if n != i {
				panic("lockout: parameter " + names[n] + " unused before " + name)
			}
			n++
		}
	}
	pairs := make([]string, 0, 2*len(names))
	for i, n := range names {
		pairs = append(pairs, "{"+n+"}", fmt.Sprintf("$%d", i+1))
	}
	q = strings.NewReplacer(pairs...).Replace(q)
	if i := strings.IndexByte(q, '{'); i >= 0 {
		panic("lockout: unbound parameter in " + q[i:])
	}
	return q, n
}

func buildQueries(p Policy) queries {
	max := p.MaxFailures
	// dur(n) is the lock length for a count n: LockDuration ×
	// 2^(max(n, MaxFailures)/MaxFailures − 1), capped at MaxLockDuration
	// (the exponent is clamped so the double cannot overflow).
	dur := func(n string) string {
		return fmt.Sprintf(`(LEAST(%d * power(2, LEAST(GREATEST(%s, %d) / %d - 1, 62)), %d) * interval '1 millisecond')`,
			p.LockDuration.Milliseconds(), n, max, max, p.MaxLockDuration.Milliseconds())
	}
	// Over the existing row a, with now and cut (now − Window):
	reset := `(a."lastAttemptAt" <= {cut}::timestamp(3) AND (a."lockedUntil" IS NULL OR a."lockedUntil" <= {cut}::timestamp(3)))`
	n := `(CASE WHEN ` + reset + ` THEN 1 ELSE a."failuresCount" + 1 END)`
	active := `COALESCE(a."lockedUntil" > {now}::timestamp(3), false)`
	whileLocked := `a."lockedUntil"`
	if p.ExtendWhileLocked {
		whileLocked = `GREATEST(a."lockedUntil", {now}::timestamp(3) + ` + dur(n) + `)`
	}
	lockedUntil := fmt.Sprintf(`CASE
		WHEN %s THEN %s
		WHEN %s %% %d = 0 THEN {now}::timestamp(3) + %s
		WHEN %s THEN NULL
		ELSE a."lockedUntil" END`, active, whileLocked, n, max, dur(n), reset)
	// lastAttemptAt never moves back (a failure from a slower clock, or one
	// that waited for the row lock after reading the clock), but a value
	// more than a window ahead (a clock far ahead) is not kept either.
	last := fmt.Sprintf(`CASE WHEN a."lastAttemptAt" > {now}::timestamp(3) + interval '%d milliseconds' THEN {now}::timestamp(3)
		ELSE GREATEST(a."lastAttemptAt", {now}::timestamp(3)) END`, p.Window.Milliseconds())
	set := `"failuresCount" = ` + n + `,
		"lockedUntil" = ` + lockedUntil + `,
		"lastAttemptAt" = ` + last + `,
		"updatedAt" = {now}::timestamp(3)`
	// A new row has a count of 1: locked at once only when MaxFailures is 1.
	firstLock := `NULL::timestamp(3)`
	if max == 1 {
		firstLock = `{now}::timestamp(3) + ` + dur("1")
	}
	// lockedNow, evaluated on the new row a, is true when this failure set
	// (or, under ExtendWhileLocked, moved) the lock: the lock then ends
	// exactly now + dur(count), which an older lock cannot (its end was
	// computed from an earlier now with a shorter or equal length).
	lockedNow := fmt.Sprintf(`COALESCE(a."lockedUntil" = {now}::timestamp(3) + %s, false)`, dur(`a."failuresCount"`))
	if !p.ExtendWhileLocked {
		lockedNow = fmt.Sprintf(`(a."failuresCount" %% %d = 0 AND %s)`, max, lockedNow)
	}

	// agg returns the lastAttemptAt of the row at which the failures within
	// the window, newest first, each row contributing at most MaxFailures,
	// reach limit: the denial lasts until that row leaves the window. NULL
	// when the limit is not reached or is off. rows selects the other rows;
	// withSelf adds the row just written (a statement does not
	// see its own writes).
	agg := func(limit int, rows string, withSelf bool) string {
		if limit == Off {
			return `NULL::timestamp(3)`
		}
		self, selfSum := "", ""
		if withSelf {
			self = fmt.Sprintf(` UNION ALL SELECT a."lastAttemptAt", LEAST(a."failuresCount", %d)`, max)
			selfSum = fmt.Sprintf(` + LEAST(a."failuresCount", %d)`, max)
		}
		where := rows + ` AND o."lastAttemptAt" > {cut}::timestamp(3) AND o."failuresCount" > 0`
		// The plain sum first: only when it reaches the limit (rare) does
		// the window query find when the denial ends.
		return fmt.Sprintf(`(SELECT CASE WHEN coalesce(sum(LEAST(o."failuresCount", %[1]d)), 0)%[2]s >= %[3]d THEN (
			SELECT x.t FROM (
				SELECT u.t, sum(u.c) OVER (ORDER BY u.t DESC ROWS UNBOUNDED PRECEDING) AS run FROM (
					SELECT o."lastAttemptAt" AS t, LEAST(o."failuresCount", %[1]d) AS c FROM auth_attempts o
					WHERE %[4]s%[5]s
				) u
			) x WHERE x.run >= %[3]d ORDER BY x.run LIMIT 1) END
			FROM auth_attempts o WHERE %[4]s)`, max, selfSum, limit, where, self)
	}

	returning := func(emailRows, ipRows string) string {
		ipAgg := `NULL::timestamp(3)`
		if ipRows != "" {
			ipAgg = agg(p.IPLimit, ipRows, true)
		}
		return `RETURNING a."failuresCount", a."lockedUntil", ` + lockedNow + `, ` +
			agg(p.EmailLimit, emailRows, true) + `, ` + ipAgg
	}

	// The unique index does not stop two (email, NULL) rows, which data
	// written before this service may hold: the pair lookups take the
	// latest lock rather than fail on a second row.
	var q queries
	q.check, q.checkArgs = bindN(`SELECT
		(SELECT max("lockedUntil") FROM auth_attempts WHERE email = {email} AND ip = {ip} AND "lockedUntil" > {now}::timestamp(3)),
		`+agg(p.EmailLimit, `o.email = {email}`, false)+`,
		`+agg(p.IPLimit, `o.ip = {ip}`, false), "email", "ip", "now", "cut")
	q.checkNullIP, q.checkNullArgs = bindN(`SELECT
		(SELECT max("lockedUntil") FROM auth_attempts WHERE email = {email} AND ip IS NULL AND "lockedUntil" > {now}::timestamp(3)),
		`+agg(p.EmailLimit, `o.email = {email}`, false)+`,
		NULL::timestamp(3)`, "email", "now", "cut")

	insert := `INSERT INTO auth_attempts AS a
		(id, email, ip, "failuresCount", "lockedUntil", "lastAttemptAt", "createdAt", "updatedAt")
		VALUES ({id}, {email}, {ip}, 1, ` + firstLock + `, {now}::timestamp(3), {now}::timestamp(3), {now}::timestamp(3))`
	q.failure = bind(insert+`
		ON CONFLICT (email, ip) DO UPDATE SET `+set+`
		`+returning(`o.email = {email} AND (o.ip <> {ip} OR o.ip IS NULL)`, `o.ip = {ip} AND o.email <> {email}`),
		"id", "email", "ip", "now", "cut")

	// Rows with a NULL ip are not covered by the unique index: the caller
	// holds a transaction-scoped advisory lock on the email around these.
	q.lockEmail = bind(`SELECT pg_advisory_xact_lock(hashtextextended('klozd.lockout:' || {email}, 0))`, "email")
	// Of two (email, NULL) rows, which data written before this service
	// may hold, the update counts on one: the latest lock's.
	q.failNullUpd = bind(`UPDATE auth_attempts AS a SET `+set+`
		WHERE a.id = (SELECT d.id FROM auth_attempts d WHERE d.email = {email} AND d.ip IS NULL
			ORDER BY d."lockedUntil" DESC NULLS LAST, d."lastAttemptAt" DESC, d.id LIMIT 1)
		`+returning(`o.email = {email} AND o.ip IS NOT NULL`, ""), "email", "now", "cut")
	q.failNullIns, q.failNullInsArgs = bindN(strings.Replace(insert, "{ip}", "NULL", 1)+`
		`+returning(`o.email = {email} AND o.ip IS NOT NULL`, ""), "id", "email", "now", "cut")

	const clear = `UPDATE auth_attempts SET "failuresCount" = 0, "lockedUntil" = NULL, "updatedAt" = {now}::timestamp(3) WHERE `
	const dirty = ` AND ("failuresCount" <> 0 OR "lockedUntil" IS NOT NULL)`
	q.success = bind(clear+`email = {email} AND ip = {ip}`+dirty, "email", "ip", "now")
	q.successNull = bind(clear+`email = {email} AND ip IS NULL`+dirty, "email", "now")
	q.unlockEmail = bind(clear+`email = {email}`+dirty, "email", "now")
	q.unlockIP = bind(clear+`ip = {ip}`+dirty, "ip", "now")

	// A row is stale when it would start over at its next failure. The inner
	// SELECT locks at most batch rows and skips rows another instance (or a
	// login) holds, so concurrent purges share the work without waiting.
	const stale = `("lockedUntil" IS NULL OR "lockedUntil" <= {cut}::timestamp(3)) AND "lastAttemptAt" <= {cut}::timestamp(3)`
	q.purge = bind(`DELETE FROM auth_attempts WHERE id IN (
		SELECT id FROM auth_attempts WHERE `+stale+`
		LIMIT {batch} FOR UPDATE SKIP LOCKED)`, "cut", "batch")
	q.countStale = bind(`SELECT count(*) FROM auth_attempts WHERE `+stale, "cut")
	return q
}
