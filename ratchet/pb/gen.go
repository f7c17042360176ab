// Package pb holds the generated protobuf types of package ratchet.
package pb

//go:generate protoc --go_out=. --go_opt=paths=source_relative ratchet.proto
