# One line per profile against concurrency.
# Called by reporting/charts.py with: datafile, outfile, chart_title, ylabel,
# logy (0/1). datafile: first column concurrency, then one column per
# profile with the profile's name as column header; "?" marks a missing cell.
set terminal pngcairo size 900,520 font "DejaVu Sans,10"
set output outfile
set title chart_title
set xlabel "concurrency (connections)"
set ylabel ylabel
set datafile missing "?"
set key outside right top
set grid
set logscale x 2
set xtics (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
set autoscale xfix
set offsets graph 0.03, graph 0.03, 0, 0
if (logy) set logscale y
ncols = system(sprintf("head -1 '%s' | wc -w", datafile)) + 0
plot for [i=2:ncols] datafile using 1:i with linespoints lw 2 pt 7 title columnheader(i)
