// Package pb holds the wire types of /madang/contact/1.0.0.
package pb

//go:generate protoc --go_out=. --go_opt=paths=source_relative contact.proto
