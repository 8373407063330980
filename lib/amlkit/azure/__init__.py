"""The Azure ML side: workspace access and the specs Azure ML runs, validated offline."""
