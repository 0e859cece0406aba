"""`lienthong simulate`: realistic traffic through the public interfaces. `plan` decides everything from the seed
(pure, testable without servers); `run` plays the plan against intake's HTTP API and Kafka."""
