package codec_test

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/petrel-rpc/petrel/codec"
)

// Parse decodes frames from an inbound buffer as they arrive: it reports
// how many bytes are missing until a whole frame is there, and the frame it
// returns points into the buffer.
func ExampleParse() {
	wire, _ := codec.AppendFrame(nil, codec.Frame{Seq: 1, Request: []byte("echo"), Payload: []byte("hello")}, nil)

	var inbound []byte
	for _, chunk := range [][]byte{wire[:6], wire[6:13], wire[13:]} {
		inbound = append(inbound, chunk...)
		f, n, need, err := codec.Parse(inbound, codec.Options{})
		switch {
		case err != nil:
			fmt.Println("error:", err)
		case n == 0:
			fmt.Printf("have %d bytes, need %d more\n", len(inbound), need)
		default:
			fmt.Printf("frame of %d bytes: seq %d, request %q, payload %q\n", n, f.Seq, f.Request, f.Payload)
			inbound = inbound[n:]
		}
	}

	// A header declaring more than the limit is refused at once.
	big, _ := codec.AppendFrame(nil, codec.Frame{Seq: 2, Request: []byte("put"), Payload: make([]byte, 100)}, nil)
	_, _, _, err := codec.Parse(big[:codec.HeaderLen], codec.Options{MaxPayload: 64})
	var le *codec.LimitError
	if errors.As(err, &le) {
		fmt.Printf("refused: status %d, reason %q\n", codec.StatusOf(err), le.Reason())
	}
	// Output:
	// have 6 bytes, need 5 more
	// have 13 bytes, need 7 more
	// frame of 20 bytes: seq 1, request "echo", payload "hello"
	// refused: status 402, reason "100 > 64"
}

// AppendFrame encodes a frame by appending it to a buffer, which can be
// reused from frame to frame.
func ExampleAppendFrame() {
	var buf []byte
	buf, err := codec.AppendFrame(buf[:0], codec.Frame{Status: codec.StatusOK, Seq: 7, Request: []byte("ping"), Payload: []byte("pong")}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("% x\n", buf[:codec.HeaderLen])
	fmt.Printf("%q\n", buf[codec.HeaderLen:])

	_, err = codec.AppendFrame(buf[:0], codec.Frame{Request: bytes.Repeat([]byte("x"), 256)}, nil)
	fmt.Println(err)
	// Output:
	// c8 00 07 00 00 00 04 04 00 00 00
	// "pingpong"
	// petrel: request text longer than 255 bytes
}

// Buffers.Frame encodes a frame as slices for a vectored write: the
// payload is not copied, and empty pieces are left out. Writing them with
// net.Buffers(vec).WriteTo(conn) sends them in one writev.
func ExampleBuffers_Frame() {
	var b codec.Buffers // one per connection
	payload := []byte("a large payload, not copied")
	vec, err := b.Frame(codec.Frame{Seq: 3, Request: []byte("upload"), Payload: payload}, codec.NewMAC([]byte("key")))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, v := range vec {
		fmt.Println(len(v))
	}
	fmt.Println(&vec[2][0] == &payload[0])
	// Output:
	// 11
	// 6
	// 27
	// 44
	// true
}

// MAC signs the payload of each outgoing frame and verifies the payload of
// each incoming one. Give each connection its own, with Clone.
func ExampleMAC() {
	m := codec.NewMAC([]byte("shared secret"))

	sig := m.AppendSign(nil, []byte("payload"))
	fmt.Printf("%s (%d bytes)\n", sig, len(sig))

	wire, _ := codec.AppendFrame(nil, codec.Frame{Seq: 1, Request: []byte("echo"), Payload: []byte("payload")}, m)
	peer := m.Clone()
	f, _, _, _ := codec.Parse(wire, codec.Options{MAC: true})
	fmt.Println(peer.Verify(f.Payload, f.MAC))

	f.Payload[0] = 'P' // tampered with in transit
	err := peer.Verify(f.Payload, f.MAC)
	fmt.Printf("%v (status %d)\n", err, uint16(codec.StatusOf(err)))
	// Output:
	// f88UbGDWkkiAVbNNhsD/ghFVYttC12Gp25ED0GwMT8Q= (44 bytes)
	// <nil>
	// petrel: HMAC verification failed (status 502)
}

// A version-1 session: the PROTOCHECK exchange carries a nonce each way,
// both ends derive the session key from them, and every later frame
// carries a 32-byte tag over its direction, header, request and payload.
// Real nonces come from crypto/rand; fixed ones keep the output stable.
func ExampleFrameMAC() {
	key := []byte("shared secret")
	clientNonce := bytes.Repeat([]byte{0xC1}, codec.NonceLen)
	serverNonce := bytes.Repeat([]byte{0x5E}, codec.NonceLen)

	// The client's PROTOCHECK payload; the server reads the client's nonce.
	check := codec.AppendProtoCheck(nil, codec.ProtocolV1, clientNonce)
	version, gotNonce, err := codec.ParseProtoCheck(check)
	fmt.Printf("PROTOCHECK % x... (%d bytes): version %d, %v\n", check[:3], len(check), version, err)

	// The server answers 200 with its own nonce; both ends derive K.
	answer := codec.AppendProtoCheck(nil, codec.ProtocolV1, serverNonce)
	_, gotServerNonce, _ := codec.ParseProtoCheck(answer)
	serverKey := codec.SessionKey(key, gotNonce, serverNonce)
	clientKey := codec.SessionKey(key, clientNonce, gotServerNonce)
	fmt.Println("same session key:", serverKey == clientKey)

	client := codec.NewFrameMAC(clientKey[:])
	server := codec.NewFrameMAC(serverKey[:])

	// The client's next request: seq one more than the PROTOCHECK's.
	wire, _ := codec.AppendFrameV1(nil, codec.Frame{Seq: 2, Request: []byte("echo"), Payload: []byte("hi")}, client, codec.ClientToServer)
	f, n, _, _ := codec.Parse(wire, codec.Options{MAC: true, Version: codec.ProtocolV1})
	fmt.Printf("request of %d bytes, %d-byte tag: %v\n", n, len(f.MAC), server.Verify(codec.ClientToServer, f))

	// The same bytes reflected back to the client as an answer fail.
	fmt.Println("reflected:", client.Verify(codec.ServerToClient, f))

	// So does a frame whose seq (or status, request text, ...) was changed.
	f.Seq = 3
	fmt.Println("replayed as seq 3:", server.Verify(codec.ClientToServer, f))
	// Output:
	// PROTOCHECK 01 c1 c1... (17 bytes): version 1, <nil>
	// same session key: true
	// request of 49 bytes, 32-byte tag: <nil>
	// reflected: petrel: HMAC verification failed
	// replayed as seq 3: petrel: HMAC verification failed
}
