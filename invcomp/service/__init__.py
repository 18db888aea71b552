"""The use cases, one per verb (encode, decode, compare, report, describe), and the one home of their defaults. The
CLI, the web app and batch call these."""
