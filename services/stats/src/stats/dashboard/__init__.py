"""The operators' dashboard: topic health from the Kafka admin API, the province's figures from the stats API."""
