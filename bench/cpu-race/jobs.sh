# The race's fio jobs, sourced by run and probe. WS is the working set of
# every random job (prefilled on the data servers).
WS=${WS:-2G}
declare -A JOB
JOB[seqwrite]="--rw=write --bs=1M --numjobs=4 --iodepth=16 --size=512M --offset_increment=512M"
JOB[seqread]="--rw=read --bs=1M --numjobs=4 --iodepth=16 --size=512M --offset_increment=512M"
JOB[randread]="--rw=randread --bs=4k --numjobs=8 --iodepth=32 --size=$WS"
JOB[randwrite]="--rw=randwrite --bs=4k --numjobs=8 --iodepth=32 --size=$WS"
JOB[qd1read]="--rw=randread --bs=4k --numjobs=1 --iodepth=1 --size=$WS --percentile_list=50:99"
JOB[randrw64k]="--rw=randrw --rwmixread=50 --bs=64k --numjobs=4 --iodepth=16 --size=$WS"
JOBS="seqwrite seqread randread randwrite qd1read randrw64k"
COMMON="--ioengine=nbd --group_reporting --output-format=json --norandommap --randrepeat=0"
