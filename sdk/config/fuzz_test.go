package config

import "testing"

// FuzzDecode checks that no JSON makes Decode panic and that its errors
// are Errors.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{}`, `null`, `{"interface":"br0","pool":[{"start":"a","end":"b","lease_time":"1h"}]}`,
		`{"offset":1e400,"ports":[1,2.5],"options":{"a":"b"},"limits":{"ratio":-0}}`,
		`{"tls":null,"pool":[null],"timeout":"-5m"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := defaults()
		err := Decode(data, &cfg)
		if err == nil {
			return
		}
		if es, ok := err.(Errors); !ok {
			t.Errorf("got %T %v, want Errors", err, err)
		} else if len(es) == 0 {
			t.Error("an error without diagnostics")
		}
	})
}
