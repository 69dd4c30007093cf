package chwire

// AppendFrameForTest lets the tests build the frames a server sends.
var AppendFrameForTest = appendFrames
