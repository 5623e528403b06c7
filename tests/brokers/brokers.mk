# Real brokers on 127.0.0.1 for the tests (issue 2). The tool is tests/brokers/harness.py
# (Python stdlib only, so it runs before the venv exists); docs/brokers.md explains it.
#   make brokers-up [BROKERS="kafka redis"]   install on first use, start in parallel, wait
#   make brokers-down                         stop by PID, wipe data, check nothing is left
#   make brokers-status                       health as '# ...' lines + export lines (eval-able)
#   make -s brokers-env                       export lines only
#   make brokers-restart NAME=kafka           stop, start, wait (data kept)
#   make brokers-logs NAME=kafka              tail of a server's log
BROKERS_PYTHON ?= python3
BROKERS_HARNESS := $(BROKERS_PYTHON) tests/brokers/harness.py

.PHONY: brokers-up brokers-down brokers-status brokers-env brokers-restart brokers-logs

brokers-up:
	@$(BROKERS_HARNESS) up $(BROKERS)

brokers-down:
	@$(BROKERS_HARNESS) down $(BROKERS)

brokers-status:
	@$(BROKERS_HARNESS) status $(BROKERS)

brokers-env:
	@$(BROKERS_HARNESS) env

brokers-restart:
	@test -n "$(NAME)" || { echo "usage: make brokers-restart NAME=kafka|rabbitmq|kinesis|pubsub|redis" >&2; exit 2; }
	@$(BROKERS_HARNESS) restart $(NAME)

brokers-logs:
	@test -n "$(NAME)" || { echo "usage: make brokers-logs NAME=kafka|rabbitmq|kinesis|pubsub|redis" >&2; exit 2; }
	@$(BROKERS_HARNESS) logs $(NAME)
