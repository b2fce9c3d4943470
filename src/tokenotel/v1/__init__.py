"""The query API's messages and stubs, generated from proto/tokenotel/v1/audit.proto by
`make proto` (grpcio-tools); do not edit the generated modules."""
