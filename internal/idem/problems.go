package idem

// The problem types of the middleware's own answers: the "type" member of
// their RFC 9457 bodies, which never changes for a given problem, so that
// a client can tell the middleware's 409 from one its handler wrote. Each
// is documented in the package documentation (see "Problem types"); the
// title of each is RFC 9110's reason phrase for its status.
const (
	// ProblemBase prefixes every problem type of the package.
	ProblemBase = "https://klozd.dev/problems/"

	// ProblemKeyMissing (400): [Config.Required] asks for a key and the
	// request carries none.
	ProblemKeyMissing = ProblemBase + "idempotency-key-missing"
	// ProblemKeyInvalid (400): the key field is malformed, repeated, or a
	// list.
	ProblemKeyInvalid = ProblemBase + "idempotency-key-invalid"
	// ProblemRequestInvalid (400): the request cannot be guarded: its body
	// is unreadable, its route or tenant cannot be stored, or its JSON body
	// is invalid or repeats a member ([ErrBodyInvalid]).
	ProblemRequestInvalid = ProblemBase + "idempotency-request-invalid"
	// ProblemRequestTooLarge (413): the request body exceeds
	// [Config.MaxRequestBody].
	ProblemRequestTooLarge = ProblemBase + "idempotency-request-too-large"
	// ProblemKeyMismatch (422): the key was used with another request.
	ProblemKeyMismatch = ProblemBase + "idempotency-key-mismatch"
	// ProblemInFlight (409, with Retry-After): a request with the key is
	// being processed.
	ProblemInFlight = ProblemBase + "idempotency-key-in-flight"
	// ProblemResponseNotKept (409, no Retry-After): the request with the
	// key was done, but its response was too large to keep, so it cannot be
	// replayed; the request is not run again.
	ProblemResponseNotKept = ProblemBase + "idempotency-response-not-kept"
	// ProblemStoreUnavailable (503, with Retry-After): keys cannot be
	// checked; the handler did not run.
	ProblemStoreUnavailable = ProblemBase + "idempotency-store-unavailable"
	// ProblemRequestStopped (503, with Retry-After): the handler was told
	// to stop, its lease lost, and stopped without an answer.
	ProblemRequestStopped = ProblemBase + "idempotency-request-stopped"
	// ProblemNotCommitted (503, with Retry-After): on a transactional route
	// ([Config.Transactional]), the handler's work and its response did not
	// commit, or the commit's outcome was lost; a retry with the key
	// replays what committed or runs afresh.
	ProblemNotCommitted = ProblemBase + "idempotency-not-committed"
	// ProblemResponseTooLarge (500): on a transactional route, the response
	// exceeded [Config.MaxResponseBody], which bounds what is held until the
	// commit; nothing was done.
	ProblemResponseTooLarge = ProblemBase + "idempotency-response-too-large"
)
