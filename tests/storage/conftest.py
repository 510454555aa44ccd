"""Storage fixtures: the real ``moto_server`` S3 endpoint (``moto_endpoint``,
``s3_options``, ``s3_bucket``) lives in ``tests/conftest.py``, shared with the service's
tests of repositories on S3."""
