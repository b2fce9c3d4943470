"""The read side of the running service: the query API (gRPC) and the ClickHouse HTTP interface."""
