package regconf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"
)

// jsonError is a problem found by checkJSON, with where it is.
type jsonError struct {
	key string
	msg string
}

func (e *jsonError) Error() string { return e.key + ": " + e.msg }

// maxDepth bounds nesting; the format needs 4 levels.
const maxDepth = 16

// checkJSON checks that data is one well-formed JSON value in which no object
// repeats a key (encoding/json silently keeps the last one). Syntax errors
// carry the line and column.
func checkJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := walk(dec, "", 0); err != nil {
		return positioned(data, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return positioned(data, err)
		}
		return &jsonError{msg: fmt.Sprintf("invalid JSON: data after the top-level value at %s", lineCol(data, dec.InputOffset()))}
	}
	return nil
}

// walk consumes one value from dec, checking objects for repeated keys.
func walk(dec *json.Decoder, path string, depth int) error {
	if depth > maxDepth {
		return &jsonError{key: path, msg: "nested too deeply"}
	}
	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return &jsonError{key: path, msg: "invalid JSON: unexpected end of file"}
		}
		return err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return err
			}
			k := kt.(string) // the decoder only yields strings in key position
			child := childPath(path, k)
			if seen[k] {
				return &jsonError{key: child, msg: "key appears more than once"}
			}
			seen[k] = true
			if err := walk(dec, child, depth+1); err != nil {
				return err
			}
		}
		_, err = dec.Token() // '}'
		return err
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if err := walk(dec, fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
		_, err = dec.Token() // ']'
		return err
	}
	return nil
}

// childPath names member k of the value at path, the way errors name keys:
// registries["docker.io"].mirrors.
func childPath(path, k string) string {
	switch path {
	case "":
		return k
	case "registries":
		return keyPath(path, k)
	}
	return path + "." + k
}

// positioned turns a decoder error into a jsonError with a line and column.
func positioned(data []byte, err error) error {
	var je *jsonError
	if errors.As(err, &je) {
		return je
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &jsonError{msg: fmt.Sprintf("invalid JSON at %s: %v", lineCol(data, se.Offset), se)}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return &jsonError{msg: "invalid JSON: unexpected end of file"}
	}
	return &jsonError{msg: "invalid JSON: " + err.Error()}
}

func lineCol(data []byte, off int64) string {
	off = min(max(off, 0), int64(len(data)))
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := len(before) - bytes.LastIndexByte(before, '\n')
	return "line " + strconv.Itoa(line) + ", column " + strconv.Itoa(col)
}

// object decodes a JSON object into its members; null is not an object.
func object(raw json.RawMessage) (map[string]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, errors.New("not an object")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	return m, nil
}

func isString(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '"'
}

// stringList decodes a JSON array of strings.
func stringList(raw json.RawMessage) ([]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '[' {
		return nil, errors.New("must be a list of strings")
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, errors.New("must be a list of strings")
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		var s string
		if !isString(it) || json.Unmarshal(it, &s) != nil {
			return nil, fmt.Errorf("item %d must be a string", i)
		}
		out = append(out, s)
	}
	return out, nil
}

// duration decodes a Go duration string ("30s", "1m30s") within (0, 1h].
func duration(raw json.RawMessage) (time.Duration, error) {
	var s string
	if !isString(raw) || json.Unmarshal(raw, &s) != nil {
		return 0, errors.New(`must be a duration string such as "30s" or "2m"`)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf(`%q is not a duration such as "30s" or "2m"`, s)
	}
	if d <= 0 || d > maxTimeout {
		return 0, fmt.Errorf("%q must be more than 0 and at most %s", s, maxTimeout)
	}
	return d, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
