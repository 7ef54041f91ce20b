"""12345 hotline & work-order dispatch services."""
