"""Local infrastructure without Docker: Apache Kafka (KRaft) from Maven Central and FerretDB built with Go."""
