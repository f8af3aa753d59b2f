#!/bin/bash
# The resize-analysis script of the original dm-remap monitoring guide,
# verbatim: what operators already run against the kernel log.
# analyze_resizes.sh

echo "=== dm-remap Resize Event Analysis ==="
echo ""

# Get all resize events
RESIZE_EVENTS=$(sudo dmesg | grep "Adaptive hash table resize")
COUNT=$(echo "$RESIZE_EVENTS" | wc -l)

echo "Total resize events: $COUNT"
echo ""

if [ "$COUNT" -gt 0 ]; then
    echo "Event sequence:"
    echo "$RESIZE_EVENTS" | while read line; do
        # Extract timestamp and transition
        TIMESTAMP=$(echo "$line" | grep -oP '\[\s*\d+\.\d+\]' || echo "[0.0]")
        TRANSITION=$(echo "$line" | grep -oP '\d+ -> \d+ buckets' || echo "Unknown")
        COUNT=$(echo "$line" | grep -oP 'count=\d+' || echo "count=0")
        
        echo "  $TIMESTAMP $TRANSITION ($COUNT)"
    done
    
    echo ""
    echo "Analysis:"
    # Calculate load factors
    echo "$RESIZE_EVENTS" | while read line; do
        FROM=$(echo "$line" | grep -oP '^[^-]*' | grep -oP '\d+$' | head -1)
        TO=$(echo "$line" | grep -oP '-> \d+' | grep -oP '\d+$')
        COUNT_VAL=$(echo "$line" | grep -oP 'count=\d+' | grep -oP '\d+$')
        
        if [ -n "$COUNT_VAL" ] && [ -n "$FROM" ]; then
            LOAD=$((COUNT_VAL * 100 / FROM))
            echo "  Before: $COUNT_VAL remaps / $FROM buckets = ${LOAD}% load → RESIZE"
            LOAD_AFTER=$((COUNT_VAL * 100 / TO))
            echo "  After:  $COUNT_VAL remaps / $TO buckets = ${LOAD_AFTER}% load ✓"
        fi
    done
fi
