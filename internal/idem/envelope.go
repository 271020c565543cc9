package idem

import (
	"encoding/json"
	"errors"
	"fmt"
)

// envelopeNotKept is the envelope version of a response that was sent but
// not kept ([Response.NotKept]): {"v":3,"notKept":true}. Versions 1 and 2
// hold a response to replay; an instance that reads only those refuses
// version 3 (a 503 for the key, never a replay of an empty body as the
// response, nor a second run), so the version says what the record is.
const envelopeNotKept = 3

func encodeNotKept() (string, error) {
	b, err := json.Marshal(envelope{V: envelopeNotKept, NotKept: true})
	if err != nil {
		return "", fmt.Errorf("encode response: %w", err)
	}
	return string(b), nil
}

func decodeNotKept(status int, env envelope) (*Response, error) {
	if !env.NotKept || env.Header != nil || env.HeaderBase64 != nil || env.Body != "" || env.BodyBase64 != nil {
		return nil, errors.New("stored response is a version 3 envelope that is not a response not kept; delete the row to let the key run again")
	}
	return &Response{Status: status, NotKept: true}, nil
}
