# Latency by percentile (wrk's distribution), one line per profile.
# x is 1/(1 - p/100) on a log axis, the usual way to spread the tail.
# Called with: datafile (columns: percentile, one per profile), outfile,
# chart_title. "?" marks a missing value.
set terminal pngcairo size 900,520 font "DejaVu Sans,10"
set output outfile
set title chart_title
set xlabel "percentile"
set ylabel "latency (ms)"
set datafile missing "?"
set key outside right top
set grid
set logscale x
set logscale y
set xtics ("50%%" 2, "90%%" 10, "99%%" 100, "99.9%%" 1000, "99.99%%" 10000)
ncols = system(sprintf("head -1 '%s' | wc -w", datafile)) + 0
plot for [i=2:ncols] datafile using (1/(1-$1/100.0)):i with linespoints lw 2 pt 7 ps 0.6 title columnheader(i)
