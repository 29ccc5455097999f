# The two commands of the README. Both set up a local .venv on first use.
.PHONY: tiny test setup
tiny:   ## set up and run the tiny pipeline (CPU, minutes; artifacts in ./artifacts)
	bash scripts/tiny.sh
test:   ## set up and run the tests (what CI runs)
	bash scripts/test.sh
setup:
	bash scripts/setup.sh
