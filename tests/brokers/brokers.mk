# Placeholder, owned by the brokers harness (issue 2): brokers-up, brokers-down,
# brokers-status, brokers-env, brokers-restart NAME=...
.PHONY: brokers-up brokers-down brokers-status brokers-env
brokers-up:
	@true
brokers-down:
	@true
brokers-status:
	@true
brokers-env:
	@true
