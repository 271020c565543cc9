// Package soak drives the real idempotency middleware and the real lockout
// service over HTTP on loopback, against a throwaway PostgreSQL it controls,
// while it injects faults: a restart, killed connections, a slow database,
// an exhausted pool, two instances sharing one database (beside the
// same two instances without the middleware, the baseline of the
// throughput comparison), and a failover: on a primary and a streaming
// standby of their own, reached through a multi-host URL with
// target_session_attrs=read-write, replication stalls for
// Config.FailoverLag, the primary is stopped in immediate mode and the
// standby promoted, once with an asynchronous standby and once with a
// synchronous one. The network scenarios put a fault proxy
// (internal/faultproxy) between each of two instances and PostgreSQL:
// partition cuts one instance off for half a lease longer than its lease
// while its handlers run and the other instance is sent their keys;
// lost-replies loses replies after their statements ran; resets resets
// every connection while statements wait on a lock; latency delays every
// reply past the statement timeout for a window. Each scenario is bounded
// in requests and time and stops by itself. Its faults are triggered by
// request count, never by elapsed time: the load pauses at the fault's
// request until the fault is under way, and its last requests wait until
// the fault is done (see gate). Afterwards it checks invariants from the
// database and from what the clients saw:
//
//   - every idempotency key's handler side effect happened at most once, and
//     exactly once for every key whose client got a 2xx or 4xx (the side
//     effects are rows of the suite's own table, soak_effects);
//   - every other key goes to a transactional endpoint, POST /tx-orders
//     (idem.Config.Transactional), whose handler inserts one row of
//     soak_tx_orders through the request's transaction: for every such key
//     exactly one order if and only if a stored record, with the record's
//     nonce, and every client that got a 2xx finds its order (see
//     checkTxOrders; counted in Result.TxOrders, TxStored, TxFound). An
//     asynchronous failover may lose an acknowledged order, but only with
//     its record (Result.TxLost);
//   - no client got a replay that differs from the original response
//     (status, body, Content-Type, Location), and no stored record has a
//     5xx status;
//   - after the fault, keys whose first attempt failed can be retried and
//     succeed;
//   - lockout: each pair's failuresCount equals the failures clients were
//     told were recorded, and every pair with enough failures is locked;
//   - after a restart, both services answer successfully again within
//     the request timeout;
//   - every error a client saw is a clean 503, 409 or 429 with a
//     problem+json body, never a hang past the request timeout;
//   - no two runs of one key overlap in time: soak_effects records each
//     run's start, when its effect landed and when its handler returned,
//     and a run spans [start, the later of the two] (Result.Overlaps);
//   - every client call returns within the request timeout plus
//     CallSlack (Result.LateCalls);
//   - after a failover, both services answer successfully within
//     RecoveryTarget of the promotion; with a synchronous standby no
//     acknowledged idempotency record or lockout failure is lost. With an
//     asynchronous one the losses are counted in the summary
//     (Result.LostRecords, LostIncrements) and the invariants checked on
//     the other keys and pairs: they are what asynchronous replication
//     costs, not a defect. Writes a client was told failed that survive on
//     the standby (the primary died waiting on a commit the standby had)
//     are counted apart (Result.AmbiguousKeys, AmbiguousPairs).
//
// At most once holds only while a fault's outage is shorter than the
// idempotency lease (see [Config.Lease]); a fault that outlasts it is
// reported as an error of the run's configuration, not as violations.
// The partition outlasts the lease by design, so there the keys are
// sorted one by one: a key whose runs overlapped because the earlier
// handler was still running when the later one started (so past its
// lease) and a key whose first response was sent but not stored before
// the lease ended are reported as configuration errors (listed in
// Result.Unchecked); any other key that ran twice is a violation, but
// one: a non-transactional key whose earlier runs' handlers all answered
// 5xx (a write whose outcome they did not know) while their effects
// landed anyway, so that the retry ran the key again, is the documented
// limit of the non-transactional mode, which the transactional one exists
// for. Such keys are counted (Result.FailedLanded) and their runs noted,
// in every scenario, not counted as violations. Behind
// a fault proxy a login failure may be recorded though its reply was
// lost: a pair with more failures than clients were told, but no more
// than the 503s they got, is counted (Result.AmbiguousPairs), not a
// violation.
//
// "make soak" runs it through cmd/soak and prints the summary table.
package soak
