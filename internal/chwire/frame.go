package chwire

import (
	"encoding/binary"
	"io"

	"github.com/go-faster/city"
	"github.com/pierrec/lz4/v4"
)

// A compressed block travels as frames: a CityHash128 checksum of the rest (16 bytes), the
// method (1), the frame's size after the checksum (4) and the size of the data once
// decompressed (4), then the compressed bytes.
const (
	checksumSize = 16
	frameHeader  = checksumSize + 1 + 4 + 4
	methodNone   = 0x02
	methodLZ4    = 0x82
	// sendFrameSize is how much of a block each frame the client sends carries, ClickHouse's
	// own max_compress_block_size.
	sendFrameSize = 1 << 20
)

// frameReader decompresses the frames of one block, each checked against maxFrameSize and
// the query's budget before anything is allocated for it.
type frameReader struct {
	r    *reader // the connection's, whose budget the frames spend
	data []byte  // decompressed, not read yet
}

func (f *frameReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		if err := f.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func (f *frameReader) next() error {
	var h [frameHeader]byte
	if _, err := io.ReadFull(f.r.r, h[:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	method := h[checksumSize]
	size := int64(binary.LittleEndian.Uint32(h[checksumSize+1:])) - (frameHeader - checksumSize)
	dataSize := int64(binary.LittleEndian.Uint32(h[checksumSize+5:]))
	if size < 0 || size > maxFrameSize || dataSize > maxFrameSize {
		return protocolErrorf("a compressed frame of %d bytes (%d decompressed) is over the limit of %d", size, dataSize, maxFrameSize)
	}
	if err := f.r.spend(size + dataSize); err != nil {
		return err
	}
	raw := make([]byte, frameHeader-checksumSize+int(size))
	copy(raw, h[checksumSize:])
	if _, err := io.ReadFull(f.r.r, raw[frameHeader-checksumSize:]); err != nil {
		return err
	}
	sum := city.CH128(raw)
	if binary.LittleEndian.Uint64(h[0:8]) != sum.Low || binary.LittleEndian.Uint64(h[8:16]) != sum.High {
		return protocolErrorf("a compressed frame has a wrong checksum")
	}
	body := raw[frameHeader-checksumSize:]
	switch method {
	case methodNone:
		if int64(len(body)) != dataSize {
			return protocolErrorf("an uncompressed frame of %d bytes says %d", len(body), dataSize)
		}
		f.data = body
	case methodLZ4:
		out := make([]byte, dataSize)
		n, err := lz4.UncompressBlock(body, out)
		if err != nil || int64(n) != dataSize {
			return protocolErrorf("a compressed frame does not decompress to its %d bytes", dataSize)
		}
		f.data = out
	default:
		return protocolErrorf("compression method 0x%02x is not LZ4", method)
	}
	return nil
}

// appendFrames appends block, compressed with LZ4 in frames of at most sendFrameSize bytes.
func appendFrames(dst, block []byte) []byte {
	var c lz4.Compressor
	for len(block) > 0 {
		chunk := block[:min(len(block), sendFrameSize)]
		block = block[len(chunk):]
		start := len(dst)
		dst = append(dst, make([]byte, frameHeader+lz4.CompressBlockBound(len(chunk)))...)
		n, err := c.CompressBlock(chunk, dst[start+frameHeader:])
		method := byte(methodLZ4)
		if err != nil || n == 0 { // incompressible: sent as it is
			method, n = methodNone, copy(dst[start+frameHeader:], chunk)
		}
		dst = dst[:start+frameHeader+n]
		h := dst[start:]
		h[checksumSize] = method
		binary.LittleEndian.PutUint32(h[checksumSize+1:], uint32(frameHeader-checksumSize+n))
		binary.LittleEndian.PutUint32(h[checksumSize+5:], uint32(len(chunk)))
		sum := city.CH128(h[checksumSize : frameHeader+n])
		binary.LittleEndian.PutUint64(h[0:8], sum.Low)
		binary.LittleEndian.PutUint64(h[8:16], sum.High)
	}
	return dst
}
