"""Installing what neural-mirage needs: weights, the user service, the editor plug-ins."""
