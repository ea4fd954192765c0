package egress

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// A tunnel is idle only when no byte moves either way: a long download
// with a silent client is not cut, and a tunnel silent both ways is, after
// IdleTimeout.
func TestSpliceIdleIsBothWays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const idle = time.Minute
		p := &Proxy{opts: Options{IdleTimeout: idle}}
		client, clientEnd := net.Pipe()
		upstream, upstreamEnd := net.Pipe()
		released := make(chan struct{})
		go p.splice(clientEnd, upstreamEnd, nil, func() { close(released) })

		// The upstream streams for 5 idle periods; the client only reads.
		go func() {
			for range 10 {
				time.Sleep(idle / 2) // fake time, part of the test: the upstream pausing between chunks
				if _, err := upstream.Write([]byte("chunk")); err != nil {
					return
				}
			}
		}()
		got := 0
		buf := make([]byte, 64)
		for got < 10*len("chunk") {
			n, err := client.Read(buf)
			if err != nil {
				t.Fatalf("tunnel cut after %d bytes of a download (%v)", got, err)
			}
			got += n
		}
		start := time.Now()
		if _, err := client.Read(buf); err == nil {
			t.Fatal("read from a silent tunnel")
		}
		if took := time.Since(start); took < idle || took > idle+time.Second {
			t.Errorf("silent tunnel closed after %v, want %v", took, idle)
		}
		<-released
		upstream.Close()
	})
}

func helloFor(t *testing.T, name string, nextProtos ...string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() { _ = tls.Client(a, &tls.Config{ServerName: name, NextProtos: nextProtos}).Handshake() }()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// replaceSNI rewrites the server_name extension body of a one-record hello
// and fixes up the lengths (names of equal length only).
func replaceSNI(t *testing.T, hello []byte, from, to string) []byte {
	t.Helper()
	if len(from) != len(to) {
		t.Fatal("equal lengths only")
	}
	return bytes.Replace(hello, []byte(from), []byte(to), 1)
}

// withExtension appends an extension to a one-record hello.
func withExtension(hello []byte, typ uint16, data []byte) []byte {
	ext := append([]byte{byte(typ >> 8), byte(typ), byte(len(data) >> 8), byte(len(data))}, data...)
	out := append(append([]byte(nil), hello...), ext...)
	grow := len(ext)
	// record length
	rl := int(out[3])<<8 | int(out[4]) + grow
	out[3], out[4] = byte(rl>>8), byte(rl)
	// handshake length
	hl := int(out[6])<<16 | int(out[7])<<8 | int(out[8]) + grow
	out[6], out[7], out[8] = byte(hl>>16), byte(hl>>8), byte(hl)
	// extensions length: find it by walking the hello
	b := out[9:]
	off := 2 + 32
	off += 1 + int(b[off])
	off += 2 + (int(b[off])<<8 | int(b[off+1]))
	off += 1 + int(b[off])
	el := int(b[off])<<8 | int(b[off+1]) + grow
	b[off], b[off+1] = byte(el>>8), byte(el)
	return out
}

func sniExt(names ...string) []byte {
	var list []byte
	for _, n := range names {
		list = append(list, nameTypeHost, byte(len(n)>>8), byte(len(n)))
		list = append(list, n...)
	}
	return append([]byte{byte(len(list) >> 8), byte(len(list))}, list...)
}

// The ClientHello reader finds the one server name, and refuses what a
// server could read differently.
func TestReadClientHello(t *testing.T) {
	base := helloFor(t, "allowed.test")
	cases := []struct {
		name     string
		in       []byte
		wantName string
		wantECH  bool
		wantErr  string
	}{
		{name: "crypto/tls hello", in: base, wantName: "allowed.test"},
		{name: "second server_name extension", in: withExtension(base, extServerName, sniExt("evil.test")), wantErr: "twice"},
		{name: "encrypted client hello", in: withExtension(base, extECH, []byte{0}), wantName: "allowed.test", wantECH: true},
		{name: "server name changed", in: replaceSNI(t, base, "allowed.test", "evilxd.test1"), wantName: "evilxd.test1"},
		{name: "not a handshake record", in: []byte{23, 3, 3, 0, 1, 0}, wantErr: "handshake record"},
		{name: "oversized record", in: []byte{22, 3, 1, 0xff, 0xff}, wantErr: "record of"},
		{name: "not a ClientHello", in: []byte{22, 3, 1, 0, 4, 2, 0, 0, 0}, wantErr: "not a ClientHello"},
		{name: "truncated", in: base[:len(base)-3], wantErr: "reading"},
		{name: "plain HTTP", in: []byte("GET / HTTP/1.1\r\n\r\n"), wantErr: "handshake record"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw, h, err := readClientHello(bufio.NewReader(bytes.NewReader(tc.in)))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.serverName != tc.wantName || h.ech != tc.wantECH {
				t.Errorf("got %+v, want name %q ech %v", h, tc.wantName, tc.wantECH)
			}
			if !bytes.Equal(raw, tc.in) {
				t.Error("the bytes read are not the bytes given")
			}
		})
	}
}

func TestParseServerName(t *testing.T) {
	cases := []struct {
		name    string
		data    []byte
		want    string
		wantErr bool
	}{
		{name: "one name", data: sniExt("a.test"), want: "a.test"},
		{name: "two names", data: sniExt("a.test", "b.test"), wantErr: true},
		{name: "trailing dot", data: sniExt("a.test."), wantErr: true},
		{name: "empty", data: sniExt(""), wantErr: true},
		{name: "control byte", data: sniExt("a.test\x00.evil"), wantErr: true},
		{name: "unknown type", data: []byte{0, 4, 1, 0, 1, 'a'}, wantErr: true},
		{name: "trailing bytes", data: append(sniExt("a.test"), 0), wantErr: true},
		{name: "empty list", data: []byte{0, 0}, wantErr: true},
	}
	for _, tc := range cases {
		got, err := parseServerName(tc.data)
		if (err != nil) != tc.wantErr || got != tc.want && !tc.wantErr {
			t.Errorf("%s: got %q, %v", tc.name, got, err)
		}
	}
}
