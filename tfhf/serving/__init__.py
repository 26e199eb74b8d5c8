"""In-graph preprocessing and SavedModel export for TF Serving."""
