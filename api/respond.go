package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// DefaultMaxBodyBytes is the request body limit when Options.MaxBodyBytes is
// not set.
const DefaultMaxBodyBytes int64 = 1 << 20

// errorBody is the JSON shape of every error response (components.schemas.Error).
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// WriteJSON writes v as a JSON response with the given status. If v cannot
// be encoded it writes a 500 "internal" error instead. Bodies are omitted for
// 204 and 304.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body, _ = json.Marshal(errorBody{errorDetail{"internal", "response encoding failed"}})
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	w.WriteHeader(status)
	if status == http.StatusNoContent || status == http.StatusNotModified {
		return
	}
	_, _ = w.Write(append(body, '\n'))
}

// WriteError writes {"error":{"code":code,"message":msg}} with the given
// status. code is a stable machine-readable snake_case string (for example
// "not_found", "bad_request", "conflict"); msg is for humans.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	WriteJSON(w, status, errorBody{errorDetail{code, msg}})
}

// DecodeJSON decodes the request body, a single JSON value, into v (a
// pointer). It requires Content-Type application/json (415
// "unsupported_media_type"), rejects unknown fields, malformed JSON, an empty
// body and trailing data (400 "bad_request") and bodies over the size limit
// (413 "too_large"). On failure it writes the error response and returns
// false; the handler should simply return.
//
// Behind Server.Handler the body is already limited to Options.MaxBodyBytes;
// elsewhere DecodeJSON applies DefaultMaxBodyBytes itself.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		WriteError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
		return false
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		WriteError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "JSON bodies must be UTF-8")
		return false
	}
	if r.Body == nil {
		WriteError(w, http.StatusBadRequest, "bad_request", "request body is empty")
		return false
	}
	body := r.Body
	if _, limited := r.Context().Value(bodyLimitKey{}).(int64); !limited {
		body = http.MaxBytesReader(w, body, DefaultMaxBodyBytes)
	}
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeDecodeError(w, err)
		return false
	}
	// Exactly one value: anything but whitespace after it is an error.
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		if err == nil || !isTooLarge(err) {
			WriteError(w, http.StatusBadRequest, "bad_request", "unexpected data after the JSON value")
			return false
		}
		writeDecodeError(w, err)
		return false
	}
	return true
}

func writeDecodeError(w http.ResponseWriter, err error) {
	var invalid *json.InvalidUnmarshalError
	switch {
	case isTooLarge(err):
		WriteError(w, http.StatusRequestEntityTooLarge, "too_large", "request body too large")
	case errors.As(err, &invalid):
		// A programming error in the handler, not the client's fault.
		WriteError(w, http.StatusInternalServerError, "internal", "internal server error")
	case errors.Is(err, io.EOF):
		WriteError(w, http.StatusBadRequest, "bad_request", "request body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		WriteError(w, http.StatusBadRequest, "bad_request", "request body is truncated JSON")
	default:
		WriteError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("invalid JSON body: %v", err))
	}
}

func isTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}
